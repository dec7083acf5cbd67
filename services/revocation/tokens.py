"""Moved: the token finders to :mod:`tokenry.store.presented_tokens`, their port and records to
:mod:`tokenry.flows.revocation` (the gateway revokes in process too). Re-exported for the
revocation service's composition root and its tests."""

from tokenry.flows.revocation import (
    OPAQUE_PREFIX,
    NoOpaqueTokens,
    OpaqueTokens,
    PresentedToken,
)
from tokenry.store.jwks_source import PublishedKeyReader as PublishedKeys
from tokenry.store.presented_tokens import JwtTokens, StoreOpaqueTokens

__all__ = [
    "OPAQUE_PREFIX",
    "JwtTokens",
    "NoOpaqueTokens",
    "OpaqueTokens",
    "PresentedToken",
    "PublishedKeys",
    "StoreOpaqueTokens",
]
