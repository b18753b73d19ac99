"""api: the HTTP API, one blueprint per audience — citizens (`me`), partners (`partner`),
modellers and operators (`admin`, `admin_models` on `admin_blueprint`), load balancers
(`health`) — with their marshmallow schemas and rate limits. Imports `rights`, `scoring`,
`store`, `base`; never `web` nor `cli`."""
