"""Reading request metadata, and the caller's client credentials from it."""

from __future__ import annotations

from typing import Any

import grpc

from tokenry.core.clientauth import Presented, credentials_from


def metadata_value(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


def caller_credentials(
    context: grpc.aio.ServicerContext[Any, Any],
    *,
    client_id: str = "",
    client_secret: str = "",
    assertion_type: str = "",
    assertion: str = "",
) -> Presented:
    """The one client-authentication method a call uses (SPEC §3): client_secret_basic in the
    ``authorization`` metadata, or client_secret_post / private_key_jwt (RFC 7523 §2.2) carried
    in the request's fields."""
    return credentials_from(
        metadata_value(context, "authorization"),
        client_id,
        client_secret,
        assertion_type,
        assertion,
    )
