"""The HTTP gateway (docs/spec.md §2): token, introspection, revocation, JWKS, discovery,
authorize."""
