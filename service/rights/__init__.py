"""rights: the rules about people — who is asking (`auth`, `partners`), consents, disputes,
human review, perks and eligibility answers, the citizen's page data (`pages`) and the
audit log of every read by someone else, a Merkle log with signed tree heads (`audit`,
`merkle`, `sequencer`, `transparency`). Imports `scoring`, `store`,
`base`."""
