"""The adapter side of idempotent admin writes: a request's ``request_id`` and body hash.

The body is the request as serialized (deterministically) without the id itself and without
fields that legitimately change on a retry (a freshly signed ``client_assertion``), prefixed
by the method name, so one id can never answer two different requests (store/idempotency.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from tokenry.store.idempotency import IdempotencyRequest, parse_request


def idempotency_of(
    request: Message, method: str, *, ignore: Iterable[str] = ()
) -> IdempotencyRequest | None:
    """The idempotency request carried by ``request`` (its ``request_id`` field), or None.

    Raises:
        InvalidRequest: a malformed request_id (not a UUID).
    """
    request_id: str = getattr(request, "request_id", "")
    if not request_id:
        return None
    body = type(request)()
    body.CopyFrom(request)
    for name in ("request_id", *ignore):
        body.ClearField(name)
    return parse_request(request_id, method, body.SerializeToString(deterministic=True))
