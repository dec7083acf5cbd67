"""The HTTP gateway (SPEC §2): token, introspection, revocation, JWKS, discovery, authorize."""
