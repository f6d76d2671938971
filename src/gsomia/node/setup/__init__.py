"""Standing up a node: init, provisioning a pair, the partner file exchanged between two security authorities."""
