"""store: the database — tables and engines (`tables`), Alembic migrations (`migrations/`),
reading records back (`records`), the bulk paths (`bulk`), and feeds coming in with their
quarantine (`ingest`). Imports only `base`."""
