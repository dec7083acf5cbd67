"""The issuer servicer's request and response, built without keyword frames (session 5): the
client-credentials TokenRequest is the keyword-built one field for field, other grants read
their own fields, and the TokenResponse carries what the flow returned."""

from __future__ import annotations

from typing import Any

import pytest

from tokenry.core.clientauth import BasicHeader
from tokenry.flows import TokenRequest, TokenResult
from tokenry.servicekit.server import Ready
from tokenry.services.issuer.servicer import IssuerApi, IssuerServicer, _token_request
from tokenry.v1 import issuer_pb2

CREDS = BasicHeader("Basic c3ZjOnM=")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"scope": "a b", "token_format": "opaque"},
        {"audience": ["x", "y"], "resource": ["https://r"], "scope": "a"},
        # Fields of other grants, sent anyway: not this grant's, not read.
        {"code": "c", "refresh_token": "r", "subject_token": "s", "requested_token_type": "t"},
    ],
)
def test_the_client_credentials_request_is_the_keyword_built_one(fields: dict[str, Any]) -> None:
    request = issuer_pb2.TokenRequest(grant_type="client_credentials", **fields)
    built = _token_request(request, CREDS)
    assert type(built) is TokenRequest and len(built) == len(TokenRequest._fields)
    assert built == TokenRequest(
        grant_type="client_credentials",
        scope=request.scope,
        audiences=(*request.audience, *request.resource),
        credentials=CREDS,
        token_format=request.token_format,
    )


def test_other_grants_read_their_own_fields() -> None:
    request = issuer_pb2.TokenRequest(
        grant_type="authorization_code", code="c", redirect_uri="u", code_verifier="v"
    )
    built = _token_request(request, CREDS)
    assert (built.code, built.redirect_uri, built.code_verifier) == ("c", "u", "v")
    assert built.credentials is CREDS and built.audiences == ()


class _Handlers:
    def __init__(self, result: TokenResult) -> None:
        self.result = result
        self.requests: list[TokenRequest] = []

    async def token(self, req: TokenRequest) -> TokenResult:
        self.requests.append(req)
        return self.result


class _Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", CREDS.authorization),)


@pytest.mark.parametrize(
    "result",
    [
        TokenResult("a.b.c", "Bearer", 300, "read"),
        TokenResult("a.b.c", "Bearer", 300, "", refresh_token="r", id_token="i.d.t"),
        TokenResult("x", "N_A", 60, "s", issued_token_type="urn:x"),
    ],
)
async def test_the_response_carries_the_result(result: TokenResult) -> None:
    handlers = _Handlers(result)
    ready: Ready[Any] = Ready()
    ready.set(IssuerApi(handlers, None))  # type: ignore[arg-type]
    servicer = IssuerServicer(ready)
    request = issuer_pb2.TokenRequest(grant_type="client_credentials", scope="read")
    response = await servicer.Token(request, _Context())  # type: ignore[arg-type]
    assert response == issuer_pb2.TokenResponse(
        access_token=result.access_token,
        token_type=result.token_type,
        expires_in=result.expires_in,
        scope=result.scope,
        issued_token_type=result.issued_token_type,
        refresh_token=result.refresh_token,
        id_token=result.id_token,
    )
    assert handlers.requests[0].credentials == CREDS
