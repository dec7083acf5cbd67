"""introspector: RFC 7662 introspection of opaque tokens and JWTs."""
