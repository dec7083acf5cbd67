"""The client registry's admin use cases (SPEC §2: only an admin registers clients).

A change commits with its ``clients.*`` event (issuers drop their cached copy); deleting a
client first revokes every token issued to it (a client revocation, SPEC §4), then its grant
families, then the registration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.core.client_cache import CachedClients
from tokenry.core.client_secrets import Pepper, generate_secret, hash_secret
from tokenry.core.clients import (
    SECRET_METHODS,
    Client,
    validate_registration,
)
from tokenry.core.clock import Clock
from tokenry.core.errors import InsufficientScope, InvalidRequest, NotFound
from tokenry.core.revocations import Revocation, RevocationKind, family_expiry, watermark
from tokenry.services.issuer.caches import Watermarks
from tokenry.store import client_events
from tokenry.store.clients import ClientExists, ClientStore
from tokenry.store.grants import GrantStore
from tokenry.store.revocations import RevocationStore

log = logging.getLogger(__name__)

MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class Created:
    client: Client
    secret: str  # "" unless the client authenticates with a secret

    def __repr__(self) -> str:
        return f"Created(client={self.client!r})"


class ClientAdmin:
    def __init__(
        self,
        *,
        store: ClientStore,
        cache: CachedClients,
        grants: GrantStore,
        revocations: RevocationStore,
        watermarks: Watermarks,
        pepper: Pepper,
        subjects: Subjects,
        clock: Clock,
    ) -> None:
        self._store = store
        self._cache = cache
        self._grants = grants
        self._revocations = revocations
        self._watermarks = watermarks
        self._pepper = pepper
        self._subjects = subjects
        self._clock = clock

    @staticmethod
    def require_admin(caller: Client) -> None:
        if not caller.is_admin:
            raise InsufficientScope("managing clients needs tokenry:admin")

    async def create(self, caller: Client, spec: Client) -> Created:
        """Register ``spec``; a secret client gets a generated ≥ 256-bit secret (SPEC §3)."""
        self.require_admin(caller)
        secret = ""
        client = replace(spec, secret_hash=None, pepper_id=None)
        if spec.auth_method in SECRET_METHODS:
            secret = generate_secret()
            client = replace(
                client, secret_hash=hash_secret(self._pepper, secret), pepper_id=self._pepper.id
            )
        validate_registration(client, registrar_is_admin=caller.is_admin)
        event = client_events.client_event(
            self._subjects.prefix, client.client_id, client_events.CREATED, self._clock.now()
        )
        try:
            await self._store.create(client, event)
        except ClientExists:
            raise InvalidRequest(f"client {client.client_id!r} is already registered") from None
        self._cache.invalidate(client.client_id)
        log.info("client %s registered by %s", client.client_id, caller.client_id)
        return Created(client, secret)

    async def get(self, caller: Client, client_id: str) -> Client:
        self.require_admin(caller)
        client = await self._store.get_client(client_id) if len(client_id) <= 255 else None
        if client is None:
            raise NotFound(f"no client {client_id[:64]!r}")
        return client

    async def list(self, caller: Client) -> list[Client]:
        self.require_admin(caller)
        return await self._store.list_clients()

    async def delete(self, caller: Client, client_id: str, reason: str) -> int:
        """Revoke every token of the client, end its families, then delete it.

        Returns the outbox seq of the client revocation's event.
        """
        self.require_admin(caller)
        if client_id == caller.client_id:
            raise InvalidRequest("an admin client cannot delete itself")
        if len(reason) > MAX_REASON:
            raise InvalidRequest(f"reason must be at most {MAX_REASON} characters")
        await self.get(caller, client_id)
        now = self._clock.now()
        # SPEC §4: every token of the client with iat < ceil(now) + max skew is revoked.
        not_before = watermark(now)
        rev = Revocation(
            RevocationKind.CLIENT,
            client_id,
            not_before,
            family_expiry(now, not_before, None),
            reason or "client deleted",
        )
        # Revocation first: if anything after it fails, the tokens are dead already and a
        # retried delete converges (every step is idempotent).
        result = await self._revocations.revoke(
            rev, caller.client_id, codec.revocation_event(self._subjects, rev, now)
        )
        seq = result.seq
        self._watermarks.raise_to("client", client_id, not_before)
        await self._grants.revoke_client_families(client_id)
        event = client_events.client_event(
            self._subjects.prefix, client_id, client_events.DELETED, now
        )
        await self._store.delete(client_id, event)
        self._cache.invalidate(client_id)
        log.info("client %s deleted by %s; revocation seq %d", client_id, caller.client_id, seq)
        return seq
