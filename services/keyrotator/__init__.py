"""keyrotator: signing-key lifecycle and the JWKS (SPEC §5)."""
