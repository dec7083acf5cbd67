"""RFC 8705 over HTTP: the gateway takes no client certificate (uvicorn neither requests one nor
exposes the peer's in the ASGI scope), so discovery says exactly that, and a client registered
for mTLS authentication or certificate-bound tokens is refused instead of getting an unbound
token (such clients use the gRPC services over mTLS: docs/security.md)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tokenry.core.clients import CLIENT_CREDENTIALS, TLS_CLIENT_AUTH
from tokenry.servicekit.config import Settings

from gateway_support import gateway_suite
from suite import add_secret_client

pytestmark = pytest.mark.integration


async def test_discovery_offers_no_mtls_and_bound_clients_are_refused(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with gateway_suite(settings, pool) as g:
        for path in (
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ):
            doc = (await g.http.get(path)).json()
            assert doc["tls_client_certificate_bound_access_tokens"] is False, path
            assert "mtls_endpoint_aliases" not in doc, path
            for field in (
                "token_endpoint_auth_methods_supported",
                "introspection_endpoint_auth_methods_supported",
                "revocation_endpoint_auth_methods_supported",
            ):
                assert TLS_CLIENT_AUTH not in doc[field], (path, field)
                assert "self_signed_tls_client_auth" not in doc[field], (path, field)

        secret = await add_secret_client(
            pool,
            settings,
            "bound-http",
            scopes={"demo.read"},
            audiences=("demo-api",),
            certificate_bound=True,
        )
        resp = await g.http.post(
            "/oauth2/token",
            data={"grant_type": CLIENT_CREDENTIALS},
            auth=httpx.BasicAuth("bound-http", secret),
        )
        # never an unbound token for a certificate-bound client (RFC 8705 §3)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"] == "invalid_client"
        assert "access_token" not in resp.text
