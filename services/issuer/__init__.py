"""issuer: the token endpoint (RFC 6749 §3.2) over gRPC."""
