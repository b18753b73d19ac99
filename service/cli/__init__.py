"""cli: the `osmanthus` command (`main`), one module per command group: data, train, model,
report, batch, service (ingest, partners, tokens, rescore, serve, audit) and the demo. The top
room: it may import every other one, and nothing imports it."""
