"""rights: the rules about people — who is asking (`auth`, `partners`), consents, disputes,
human review, perks and eligibility answers, the citizen's page data (`pages`) and the
hash-chained audit log of every read by someone else (`audit`). Imports `scoring`, `store`,
`base`."""
