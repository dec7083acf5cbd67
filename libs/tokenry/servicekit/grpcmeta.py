"""Reading request metadata, and the caller's client credentials from it."""

from __future__ import annotations

import os
from typing import Any

import grpc

from tokenry.core.clientauth import Presented, credentials_from, peer_from
from tokenry.core.mtls import request_certificate

#: The header a trusted proxy in front puts the client's address in (e.g. x-forwarded-for);
#: unset, any such header is ignored (issue 13 item 8).
TRUSTED_PROXY_HEADER = "TOKENRY_TRUSTED_PROXY_HEADER"
#: Metadata keys of private_key_jwt for RPCs whose messages have no assertion fields.
ASSERTION_TYPE_KEY = "client-assertion-type"
ASSERTION_KEY = "client-assertion"


class _Transport:
    """What a failure or RFC 8705 may need to know of the call's transport, read only then: the
    caller's peer for the failure limiter (:meth:`peer`, which ``core.clientauth.request_peer``
    finds through ``core.mtls.request_certificate``) and its verified client certificate
    (:meth:`client_certificate`). One object and one ``ContextVar`` set per call, for both: a
    successful authentication of a client without a certificate reads neither."""

    __slots__ = ("_context",)

    _context: grpc.aio.ServicerContext[Any, Any]

    def peer(self) -> str:
        header = os.environ.get(TRUSTED_PROXY_HEADER, "").strip().lower()
        forwarded = metadata_value(self._context, header) if header else None
        return peer_from(self._context.peer() or "", forwarded, trusted=bool(header))

    def client_certificate(self) -> bytes | None:
        values = list(self._context.auth_context().get("x509_pem_cert") or ())
        return bytes(values[0]) if values else None


# Built without an __init__ frame: one per call on every service's hot path.
_new_transport = object.__new__


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
    """The one client-authentication method a call uses (docs/spec.md §3): client_secret_basic in
    the ``authorization`` metadata, or client_secret_post / private_key_jwt (RFC 7523 §2.2) carried
    in the request's fields."""
    transport = _new_transport(_Transport)
    transport._context = context
    # The failure limiter's peer and RFC 8705's certificate, read from the call only if a failure,
    # a client or a bound token needs them (core.clientauth.request_peer, core.mtls).
    request_certificate.set(transport)
    # metadata_value(context, "authorization"), inline: one frame less per call.
    authorization = None
    for name, value in context.invocation_metadata() or ():
        if name == "authorization":
            authorization = value.decode() if isinstance(value, bytes) else value
            break
    if not (authorization or assertion or assertion_type or client_secret):
        # RPCs without assertion fields (admin and control-plane RPCs) take private_key_jwt
        # (RFC 7523 §2.2) in metadata; looked for only when nothing else was presented.
        assertion = metadata_value(context, ASSERTION_KEY) or ""
        if assertion:
            assertion_type = metadata_value(context, ASSERTION_TYPE_KEY) or ""
    return credentials_from(
        authorization,
        client_id,
        client_secret,
        assertion_type,
        assertion,
    )
