"""Client authentication to the token endpoint (RFC 6749 §2.3): the :class:`ClientAuth` port."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote_plus

from tokenry.v1 import issuer_pb2

__all__ = ["ClientAuth", "ClientSecretBasic", "Metadata"]

Metadata = Sequence[tuple[str, str]]


# --- client authentication (the extension point for private_key_jwt) ----------------------------


class ClientAuth(Protocol):
    """How the client authenticates to the token endpoint (RFC 6749 §2.3)."""

    def apply(self, request: issuer_pb2.TokenRequest) -> Metadata:
        """Set request fields this method needs and return the metadata to send with it.

        Called once per token fetch, so a method that signs an assertion makes a fresh one.
        """
        ...


@dataclass(frozen=True, slots=True)
class ClientSecretBasic:
    """``client_secret_basic``: HTTP Basic with form-urlencoded id and secret (RFC 6749 §2.3.1)."""

    client_id: str
    client_secret: str = field(repr=False)

    def apply(self, request: issuer_pb2.TokenRequest) -> Metadata:
        del request  # nothing in the body
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
        return (("authorization", "Basic " + base64.b64encode(pair.encode()).decode("ascii")),)
