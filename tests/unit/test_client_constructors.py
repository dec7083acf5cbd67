"""The one way tests, scripts and the dev stack build a secret-authenticated or a private_key_jwt
client (tokenry.core.clients.secret_client, with_secret, private_key_jwt_client): the peppered
hash and its pepper id go together, and what is built is a valid registration."""

from __future__ import annotations

import json

from tokenry.core.client_secrets import Pepper, pepper_id, verify_secret
from tokenry.core.clients import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    CONFIDENTIAL,
    PRIVATE_KEY_JWT,
    REFRESH_TOKEN,
    SECRET_BASIC,
    private_key_jwt_client,
    secret_client,
    validate_registration,
    with_secret,
)

PEPPER = Pepper(pepper_id(b"p" * 32), b"p" * 32)
OTHER_PEPPER = Pepper(pepper_id(b"q" * 32), b"q" * 32)
SECRET = "tkr_cs_" + "s" * 43


def test_a_client_credentials_client_keeps_only_the_peppered_hash() -> None:
    client = secret_client("svc", SECRET, PEPPER, scopes={"read"}, audiences=("api",))
    assert client.grant_types == frozenset({CLIENT_CREDENTIALS})
    assert client.scopes == frozenset({"read"})
    assert client.audiences == ("api",)
    assert (client.client_type, client.auth_method) == (CONFIDENTIAL, SECRET_BASIC)
    assert client.pepper_id == PEPPER.id
    assert client.secret_hash is not None and SECRET not in client.secret_hash
    assert verify_secret(PEPPER, SECRET, client.secret_hash)
    assert not verify_secret(PEPPER, SECRET + "x", client.secret_hash)
    validate_registration(client, registrar_is_admin=False)


def test_other_grants_and_fields_pass_through() -> None:
    client = secret_client(
        "web",
        SECRET,
        PEPPER,
        scopes=("openid", "read"),
        audiences=("api",),
        grant_types={AUTHORIZATION_CODE, REFRESH_TOKEN},
        redirect_uris=("https://app.test/cb",),
        token_format="opaque",
        description="portal",
    )
    assert client.grant_types == frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN})
    assert (client.redirect_uris, client.token_format, client.description) == (
        ("https://app.test/cb",),
        "opaque",
        "portal",
    )
    validate_registration(client, registrar_is_admin=False)


def test_with_secret_replaces_the_hash_and_its_pepper_id_together() -> None:
    client = secret_client("svc", SECRET, PEPPER, scopes={"read"}, description="kept")
    changed = with_secret(client, "new-secret", OTHER_PEPPER)
    assert changed.pepper_id == OTHER_PEPPER.id
    assert changed.secret_hash is not None
    assert verify_secret(OTHER_PEPPER, "new-secret", changed.secret_hash)
    assert not verify_secret(OTHER_PEPPER, SECRET, changed.secret_hash)
    assert (changed.client_id, changed.scopes, changed.description) == ("svc", {"read"}, "kept")


def test_a_private_key_jwt_client_has_its_keys_and_no_secret() -> None:
    jwk = {"kty": "EC", "crv": "P-256", "x": "x" * 43, "y": "y" * 43, "kid": "k1", "alg": "ES256"}
    jwks = json.dumps({"keys": [jwk]})
    client = private_key_jwt_client("svc", jwks, scopes={"read"}, audiences=("api",))
    assert (client.secret_hash, client.pepper_id) == (None, None)
    assert (client.auth_method, client.jwks_json) == (PRIVATE_KEY_JWT, jwks)
    assert client.grant_types == frozenset({CLIENT_CREDENTIALS})
    validate_registration(client, registrar_is_admin=False)
    assert private_key_jwt_client("svc", jwks, scopes=(), token_format="opaque").token_format == (
        "opaque"
    )
