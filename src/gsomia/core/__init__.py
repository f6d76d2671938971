"""The pure core: the agreement, labels, decisions, envelopes, the ledger and the keys; no clock, no store, no network."""
