"""What a running node is built from: its configuration, keys, clock, lanes, trace and TLS."""
