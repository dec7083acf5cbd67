"""revocation: durable revocations and their events (docs/spec.md §4)."""
