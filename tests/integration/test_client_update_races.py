"""`tokenry client update` (ClientAdmin.update) against concurrent writers, real PostgreSQL.

An update changes only its UPDATABLE fields of the row as it is when the update commits: a
concurrent update keeps its changes, and a client deleted and re-created with the same id in
the meantime keeps its new secret and grants. The races are made deterministic by running the
other writer inside ClientStore.update, before the update's own transaction starts.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tokenry.bus import codec
from tokenry.core.client_cache import CachedClients
from tokenry.core.client_secrets import Pepper, pepper_id
from tokenry.core.clients import Client, secret_client
from tokenry.core.clock import SystemClock
from tokenry.flows.watermarks import Watermarks
from tokenry.servicekit.config import Settings
from tokenry.services.issuer.client_admin import ClientAdmin
from tokenry.store.clients import ClientStore
from tokenry.store.grants import GrantStore
from tokenry.store.revocations import RevocationStore

pytestmark = pytest.mark.integration

ADMIN = Client(
    client_id="admin",
    secret_hash=None,
    pepper_id=None,
    grant_types=frozenset({"client_credentials"}),
    scopes=frozenset({"tokenry:admin"}),
    audiences=("tokenry",),
)


class InterleavedStore(ClientStore):
    """A real store that runs ``before`` once, when ``update`` is first entered."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.before: Callable[[], Awaitable[None]] | None = None

    async def update(self, *args: Any, **kwargs: Any) -> Any:
        before, self.before = self.before, None
        if before is not None:
            await before()
        return await super().update(*args, **kwargs)


def web_client(pepper: Pepper, secret: str, scopes: frozenset[str]) -> Client:
    return secret_client(
        "web",
        secret,
        pepper,
        scopes=scopes,
        audiences=("api",),
        grant_types={"authorization_code"},
        redirect_uris=("https://web.test/cb",),
        description="first",
    )


def admin_for(settings: Settings, store: ClientStore, pool: asyncpg.Pool) -> ClientAdmin:
    clock = SystemClock()
    return ClientAdmin(
        store=store,
        cache=CachedClients(store, clock),
        grants=GrantStore(pool),
        revocations=RevocationStore(pool),
        watermarks=Watermarks(),
        pepper=next(iter(settings.peppers.values())),
        subjects=settings.subjects,
        clock=clock,
    )


async def test_recreated_client_never_gets_the_old_secret(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    store = InterleavedStore(pool)
    admin = admin_for(settings, store, pool)
    pepper = next(iter(settings.peppers.values()))
    assert pepper.id == pepper_id(pepper.key)
    old = web_client(pepper, secrets.token_urlsafe(32), frozenset({"old.scope"}))
    new = web_client(pepper, secrets.token_urlsafe(32), frozenset({"new.scope"}))
    await store.create(old, None)

    async def delete_and_recreate() -> None:
        event = codec.client_event(
            settings.subjects, codec.ClientChanged("web", codec.CLIENT_DELETED), 0.0
        )
        await store.delete("web", event)
        await store.create(new, None)

    store.before = delete_and_recreate
    updated = await admin.update(ADMIN, "web", {"description": "changed"})
    stored = await store.get_client("web")
    assert stored is not None
    assert (stored.secret_hash, stored.scopes) == (new.secret_hash, new.scopes)
    assert stored.description == "changed" and updated == stored


async def test_concurrent_updates_keep_each_others_changes(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    store = InterleavedStore(pool)
    admin = admin_for(settings, store, pool)
    pepper = next(iter(settings.peppers.values()))
    await store.create(web_client(pepper, "s" * 43, frozenset({"read"})), None)
    uris = ("https://web.test/cb", "https://web.test/cb2")

    async def other_update() -> None:
        await admin.update(ADMIN, "web", {"redirect_uris": uris})

    store.before = other_update
    await admin.update(ADMIN, "web", {"description": "changed"})
    stored = await store.get_client("web")
    assert stored is not None
    assert (stored.description, stored.redirect_uris) == ("changed", uris)

    # Truly concurrent: each update changes one field, none is lost.
    origins = ("https://web.test",)
    await asyncio.gather(
        admin.update(ADMIN, "web", {"description": "again"}),
        admin.update(ADMIN, "web", {"web_origins": origins}),
        admin.update(ADMIN, "web", {"post_logout_redirect_uris": ("https://web.test/bye",)}),
        admin.update(ADMIN, "web", {"redirect_uris": uris[:1]}),
    )
    stored = await store.get_client("web")
    assert stored is not None
    assert stored.description == "again" and stored.web_origins == origins
    assert stored.post_logout_redirect_uris == ("https://web.test/bye",)
    assert stored.redirect_uris == uris[:1]
    updated_events = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE subject LIKE '%clients.updated'"
    )
    assert updated_events == 6
