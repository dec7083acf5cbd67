"""Objects that carry secrets or tokens never print them (docs/spec.md §3: nothing secret in
logs)."""

from __future__ import annotations

from tokenry.core.clientauth import BasicHeader
from tokenry.flows import TokenRequest, TokenResult
from tokenry.services.introspector.handlers import IntrospectRequest

HEADER = "Basic ZGVtbzp0a3JfY3Nfc2VjcmV0"  # base64("demo:tkr_cs_secret")
TOKEN = "tkr_at_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"


def test_requests_and_results_hide_their_secrets() -> None:
    printed = [
        repr(BasicHeader(HEADER)),
        repr(TokenRequest("refresh_token", "a", (), BasicHeader(HEADER), refresh_token=TOKEN)),
        repr(TokenRequest("authorization_code", "a", (), BasicHeader(HEADER), code=TOKEN)),
        repr(TokenResult(TOKEN, "Bearer", 60, "a", refresh_token=TOKEN, id_token=TOKEN)),
        repr(IntrospectRequest(BasicHeader(HEADER), TOKEN, "access_token")),
    ]
    for text in printed:
        assert HEADER not in text and "ZGVtbzp0a3JfY3Nfc2VjcmV0" not in text
        assert TOKEN not in text
