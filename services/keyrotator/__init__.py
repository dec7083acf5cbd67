"""keyrotator: signing-key lifecycle and the JWKS (docs/spec.md §5)."""
