"""The exceptions of :mod:`tokenry.bus`, under the one root
:class:`tokenry.core.errors.TokenryError`::

    TokenryError
    └── BusError
        └── UndecodableEvent        bytes that are not a Tokenry event this version understands
            └── MalformedSnapshot   a snapshot message whose columns differ in length

``UndecodableEvent`` is also a ``ValueError``, as it always was.
"""

from __future__ import annotations

from tokenry.core.errors import TokenryError

__all__ = ["BusError", "MalformedSnapshot", "UndecodableEvent"]


class BusError(TokenryError):
    """Something on the event bus that this process cannot use."""


class UndecodableEvent(BusError, ValueError):
    """Bytes on the event stream that are not a Tokenry event this version understands."""


class MalformedSnapshot(UndecodableEvent):
    """A snapshot message that is inconsistent (columns of different lengths)."""
