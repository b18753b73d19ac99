"""scoring: records → features → points → stored scores — one person or a list (`score`,
`rescore`), the whole city in shards (`batch`), re-scoring everyone (`everyone`), and the
champion model loaded for serving (`serving`). Imports `store` and `base`."""
