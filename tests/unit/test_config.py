"""Configuration is validated at start-up, with one clear error per bad value."""

from __future__ import annotations

import pytest

from tokenry.core.keywrap import Kek
from tokenry.servicekit.config import ConfigError, listen_addr, load

GOOD = {
    "TOKENRY_DATABASE_URL": "postgresql://db/tokenry",
    "TOKENRY_NATS_URL": "nats://127.0.0.1:4222",
    "TOKENRY_ISSUER_URL": "https://auth.example",
    "TOKENRY_SECRET_PEPPER": "p" * 43,
}


def test_good_environment_loads() -> None:
    kek = Kek.generate()
    settings = load({**GOOD, "TOKENRY_KEK": kek.encoded()}, need_kek=True)
    assert settings.kek is not None and settings.kek.id == kek.id
    assert settings.subjects.revocation.__name__ == "revocation"
    assert settings.stream.name == "TOKENRY_EVENTS"
    assert not settings.dev


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"TOKENRY_DATABASE_URL": ""}, "TOKENRY_DATABASE_URL"),
        ({"TOKENRY_NATS_URL": ""}, "TOKENRY_NATS_URL"),
        ({"TOKENRY_ISSUER_URL": ""}, "TOKENRY_ISSUER_URL"),
        ({"TOKENRY_SECRET_PEPPER": "short"}, "TOKENRY_SECRET_PEPPER"),
        ({"TOKENRY_KEK": "not base64!"}, "TOKENRY_KEK"),
        ({"TOKENRY_KEK": "AAAA"}, "TOKENRY_KEK"),
        ({"TOKENRY_ACCESS_TOKEN_ALG": "HS256"}, "TOKENRY_ACCESS_TOKEN_ALG"),
        ({"TOKENRY_STREAM_REPLICAS": "0"}, "TOKENRY_STREAM_REPLICAS"),
        ({"TOKENRY_DEV": "maybe"}, "TOKENRY_DEV"),
        ({"TOKENRY_NATS_PREFIX": "a.b"}, "TOKENRY_NATS_PREFIX"),
    ],
)
def test_each_bad_value_names_its_variable(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load({**GOOD, "TOKENRY_KEK": Kek.generate().encoded(), **change})


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        load({**GOOD, "TOKENRY_KEK": "secret-kek-material"})
    assert "secret-kek-material" not in str(err.value)


def test_kek_is_required_where_needed() -> None:
    with pytest.raises(ConfigError, match="TOKENRY_KEK"):
        load(GOOD, need_kek=True)


def test_dev_mode_defaults_the_issuer_url_and_binds_loopback() -> None:
    env = {**GOOD, "TOKENRY_DEV": "1"}
    del env["TOKENRY_ISSUER_URL"]
    assert load(env).issuer_url == "http://127.0.0.1:8080"
    assert listen_addr("issuer", {"TOKENRY_DEV": "1"}) == ("127.0.0.1", 50051)
    assert listen_addr("revocation", {}) == ("0.0.0.0", 50053)
    with pytest.raises(ConfigError, match="TOKENRY_ISSUER_LISTEN"):
        listen_addr("issuer", {"TOKENRY_ISSUER_LISTEN": "nonsense"})
