"""The introspection use case moved to :mod:`tokenry.flows.introspection` (the gateway runs it
in process too); these names stay for the introspector's composition root and its tests."""

from tokenry.flows.introspection import (
    MAX_TOKEN_LENGTH,
    IntrospectionFlow,
    IntrospectRequest,
    KeyCache,
    OpaqueRecord,
    OpaqueRecords,
    RevocationCheck,
)

IntrospectorHandlers = IntrospectionFlow

__all__ = [
    "MAX_TOKEN_LENGTH",
    "IntrospectRequest",
    "IntrospectionFlow",
    "IntrospectorHandlers",
    "OpaqueRecord",
    "OpaqueRecords",
    "RevocationCheck",
    "KeyCache",
]
