"""The revocation use cases moved to :mod:`tokenry.flows.revocation` (the gateway runs them in
process too); these names stay for the revocation service's composition root."""

from tokenry.flows.revocation import (
    DEFAULT_SNAPSHOT_BATCH,
    MAX_REASON,
    MAX_TOKEN,
    RevocationFlow,
    RevokeCommand,
    RevokeOutcome,
    Target,
    TokenFinder,
)

RevocationHandlers = RevocationFlow

__all__ = [
    "DEFAULT_SNAPSHOT_BATCH",
    "MAX_REASON",
    "MAX_TOKEN",
    "RevocationFlow",
    "RevocationHandlers",
    "RevokeCommand",
    "RevokeOutcome",
    "Target",
    "TokenFinder",
]
