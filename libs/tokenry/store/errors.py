"""The exceptions of :mod:`tokenry.store`, under the one root
:class:`tokenry.core.errors.TokenryError`::

    TokenryError
    └── StoreError
        ├── ClientExists    a client with this id is already registered
        ├── DuplicateRow    a row with this key exists already (the in-memory store's unique
        │                   violation)
        └── LeaseLost       the writer's lease is no longer current: nothing was written

PostgreSQL's own errors (``asyncpg.PostgresError``, connection errors) pass through unchanged:
``tokenry.store.db.UNAVAILABLE_ERRORS`` lists the ones that mean "retry later".
"""

from __future__ import annotations

from tokenry.core.errors import TokenryError

__all__ = ["ClientExists", "DuplicateRow", "LeaseLost", "StoreError"]


class StoreError(TokenryError):
    """A storage operation refused by Tokenry's own rules."""


class ClientExists(StoreError):
    """A client with this id is already registered."""


class DuplicateRow(StoreError):
    """A row with this key exists already (PostgreSQL: a unique violation)."""


class LeaseLost(StoreError):
    """The writer's lease is no longer current: another replica leads now; nothing was written."""
