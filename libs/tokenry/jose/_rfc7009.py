"""RFC 7009 §2.1 token revocation: a client proves a JWT is its own by the signature alone.

A client may revoke its own token even after it expired (RFC 7009 §2.1, docs/spec.md §3), and a
revocation request names no audience: so this path checks the signature against the published
key (pinned alg, RFC 8725 §3.1) and nothing else. It is private on purpose — no public function
or option of :mod:`tokenry.jose` or :mod:`tokenry.verifier` skips the expiry or the audience
check; only the revocation service imports this module.
"""

from __future__ import annotations

from typing import Any

from tokenry.jose._decoder import Decoder, JwsParts, _claims_object, _decode_segment
from tokenry.jose._json import DECODE_ERRORS
from tokenry.jose._keys import VerificationKey
from tokenry.jose.errors import MalformedTokenError, VerificationError

__all__ = ["owned_token_claims"]


def owned_token_claims(decoder: Decoder, parts: JwsParts, key: VerificationKey) -> dict[str, Any]:
    """The payload of ``parts`` once its signature verifies under ``key``: NO claim checks.

    Args:
        decoder: the decoder whose :meth:`~tokenry.jose.Decoder.parse` produced ``parts``.
        parts: the parsed token (shape and header already checked).
        key: the published key the header's ``kid`` names.

    Raises:
        RejectedHeaderError: ``alg_mismatch``.
        BadSignatureError: ``bad_signature``.
        MalformedTokenError: the payload is not a strict JSON object.
    """
    try:
        decoder.policy.check(parts.alg, key, parts.signing_input, parts.signature)
        return _claims_object(_decode_segment(parts.payload_segment))
    except VerificationError:
        raise
    except DECODE_ERRORS:
        raise MalformedTokenError("malformed", "token could not be decoded") from None
