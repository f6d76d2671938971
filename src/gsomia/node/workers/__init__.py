"""What runs beside the APIs: delivery to the partner, the ledger sequencer, the witness of the partner's heads, the watchers."""
