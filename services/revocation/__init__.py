"""revocation: durable revocations and their events (SPEC §4)."""
