"""The client registry's admin use cases (docs/spec.md §2: only an admin registers clients).

A change commits with its ``clients.*`` event (issuers drop their cached copy); deleting a
client first revokes every token issued to it (a client revocation, docs/spec.md §4), then its grant
families, then the registration.

Both writes take an optional request_id (store/idempotency.py): the answer is stored with the
write, so a retry after a lost answer gets it back. A CreateClient answer holds the one-time
client secret, which must never rest in the database in clear (docs/spec.md §3: only a keyed hash):
it is stored sealed with AES-256-GCM under a key derived from the server pepper (which never
enters the database), bound to the caller and request_id, and swept after 24 h.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
from tokenry.store import clients as store_clients
from tokenry.store.clients import ClientExists, ClientStore
from tokenry.store.grants import GrantStore
from tokenry.store.idempotency import IdempotencyKey, IdempotencyRequest, IdempotencyStore, Replay
from tokenry.store.revocations import RevocationStore

log = logging.getLogger(__name__)

MAX_REASON = 200
#: what UpdateClient may change: nothing an issued token depends on (the store writes only these)
UPDATABLE = store_clients.UPDATABLE


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
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self._idempotency = idempotency  # None: requests carrying a request_id are refused
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

    async def create(
        self,
        caller: Client,
        spec: Client,
        idem: IdempotencyRequest | None = None,
        respond: Callable[[Created], bytes] | None = None,
    ) -> Created | Replay:
        """Register ``spec``; a secret client gets a generated ≥ 256-bit secret (docs/spec.md §3).

        With ``idem`` (and ``respond``, the adapter's serializer), a retry of a create that
        committed gets the first answer back, secret included (:class:`Replay`).
        """
        self.require_admin(caller)
        key = await self._idempotency_key(caller, idem, respond)
        if isinstance(key, Replay):
            return key
        secret = ""
        client = replace(spec, secret_hash=None, pepper_id=None)
        if spec.auth_method in SECRET_METHODS:
            secret = generate_secret()
            client = replace(
                client, secret_hash=hash_secret(self._pepper, secret), pepper_id=self._pepper.id
            )
        validate_registration(client, registrar_is_admin=caller.is_admin)
        event = codec.client_event(
            self._subjects,
            codec.ClientChanged(client.client_id, codec.CLIENT_CREATED),
            self._clock.now(),
        )
        created = Created(client, secret)
        record = None
        if key is not None and respond is not None:
            record = (key, self._seal(key, respond(created)))
        try:
            stored = await self._store.create(client, event, idem=record)
        except ClientExists:
            raise InvalidRequest(f"client {client.client_id!r} is already registered") from None
        if stored is not None and key is not None:
            return Replay(self._open(key, stored))
        self._cache.invalidate(client.client_id)
        log.info("client %s registered by %s", client.client_id, caller.client_id)
        return created

    async def get(self, caller: Client, client_id: str) -> Client:
        self.require_admin(caller)
        client = await self._store.get_client(client_id) if len(client_id) <= 255 else None
        if client is None:
            raise NotFound(f"no client {client_id[:64]!r}")
        return client

    async def update(self, caller: Client, client_id: str, changes: dict[str, object]) -> Client:
        """Change a registration in place, with its ``clients.updated`` event (caches drop it).

        Only fields no issued token depends on (``UPDATABLE``): the browser attributes of
        docs/gateway.md, the redirect URIs (codes already issued keep theirs) and the
        description."""
        self.require_admin(caller)
        if not set(changes) <= UPDATABLE:
            raise InvalidRequest(f"only {', '.join(sorted(UPDATABLE))} can be updated")
        if len(client_id) > 255:
            raise NotFound(f"no client {client_id[:64]!r}")
        event = codec.client_event(
            self._subjects,
            codec.ClientChanged(client_id, codec.CLIENT_UPDATED),
            self._clock.now(),
        )

        def check(client: Client) -> None:
            validate_registration(client, registrar_is_admin=caller.is_admin)

        # Read, check and write in one transaction (the row locked): a read outside it would
        # write a stale registration back, secret and grants included.
        client = await self._store.update(client_id, changes, event, check)
        if client is None:
            raise NotFound(f"no client {client_id[:64]!r}")
        self._cache.invalidate(client_id)
        log.info("client %s updated by %s: %s", client_id, caller.client_id, sorted(changes))
        return client

    async def list(self, caller: Client) -> list[Client]:
        self.require_admin(caller)
        return await self._store.list_clients()

    async def delete(
        self,
        caller: Client,
        client_id: str,
        reason: str,
        idem: IdempotencyRequest | None = None,
        respond: Callable[[int], bytes] | None = None,
    ) -> int | Replay:
        """Revoke every token of the client, end its families, then delete it.

        Returns the outbox seq of the client revocation's event (a :class:`Replay` of the
        first answer for a retry with the same request_id).
        """
        self.require_admin(caller)
        key = await self._idempotency_key(caller, idem, respond)
        if isinstance(key, Replay):
            return key
        if client_id == caller.client_id:
            raise InvalidRequest("an admin client cannot delete itself")
        if len(reason) > MAX_REASON:
            raise InvalidRequest(f"reason must be at most {MAX_REASON} characters")
        await self.get(caller, client_id)
        now = self._clock.now()
        # docs/spec.md §4: every token of the client with iat < ceil(now) + max skew is revoked.
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
        event = codec.client_event(
            self._subjects, codec.ClientChanged(client_id, codec.CLIENT_DELETED), now
        )
        record = None
        if key is not None and respond is not None:
            record = (key, self._seal(key, respond(seq)))
        stored = await self._store.delete(client_id, event, idem=record)
        self._cache.invalidate(client_id)
        if stored is not None and key is not None:
            return Replay(self._open(key, stored))
        log.info("client %s deleted by %s; revocation seq %d", client_id, caller.client_id, seq)
        return seq

    async def _idempotency_key(
        self,
        caller: Client,
        idem: IdempotencyRequest | None,
        respond: Callable[..., bytes] | None,
    ) -> IdempotencyKey | Replay | None:
        """The caller's idempotency key, or the stored answer of a request that committed (a
        fast path before any work: a create that committed would now fail, the id taken)."""
        if idem is None:
            return None
        if self._idempotency is None or respond is None:
            raise InvalidRequest("this service does not accept request_id")
        key = idem.key(caller.client_id)
        stored = await self._idempotency.lookup(key)
        if stored is not None:
            return Replay(self._open(key, stored))
        return key

    # Stored answers are sealed: a CreateClient answer holds the client secret.
    _SEALED = b"tir1"

    def _aead(self) -> AESGCM:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"tokenry idempotency v1"
        ).derive(self._pepper.key)
        return AESGCM(key)

    def _seal(self, key: IdempotencyKey, response: bytes) -> bytes:
        nonce = os.urandom(12)
        pid = self._pepper.id.encode()
        aad = f"{key.caller}/{key.request_id}".encode()
        sealed = self._aead().encrypt(nonce, response, aad)
        return self._SEALED + bytes([len(pid)]) + pid + nonce + sealed

    def _open(self, key: IdempotencyKey, stored: bytes) -> bytes:
        if stored[:4] != self._SEALED:
            raise InvalidRequest("the stored answer of this request_id cannot be read")
        n = stored[4]
        pid, nonce, sealed = stored[5 : 5 + n], stored[5 + n : 17 + n], stored[17 + n :]
        if pid != self._pepper.id.encode():  # the pepper was rotated since
            raise InvalidRequest("the stored answer of this request_id cannot be read any more")
        aad = f"{key.caller}/{key.request_id}".encode()
        return self._aead().decrypt(nonce, sealed, aad)
