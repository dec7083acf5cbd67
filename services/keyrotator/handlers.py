"""Key rotator use cases: the scheduled maintenance, on-demand rotation, emergency revocation.

Every write follows one pattern: decide with the pure lifecycle (core/keylifecycle.py) on a
snapshot to know which keys to generate, generate them off the event loop, then in one
transaction (table lock + the leader's fencing check, store/keys.py) decide again on fresh rows,
write each change and its event to the outbox. A decision that is no longer valid inside the
transaction raises and writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenry.bus import codec
from tokenry.bus.codec import KeyHint, Subjects
from tokenry.core.client_secrets import Pepper
from tokenry.core.clientauth import (
    AssertionContext,
    ClientLookup,
    FailureLimiter,
    Presented,
    authenticate,
)
from tokenry.core.clients import ADMIN_SCOPE, Client
from tokenry.core.clock import Clock
from tokenry.core.errors import InsufficientScope, InvalidRequest, NotFound, TemporarilyUnavailable
from tokenry.core.keylifecycle import (
    Change,
    KeyInfo,
    KeySet,
    KeyState,
    LifecycleError,
    NewKey,
    NoActiveKey,
    SuccessorNotReady,
    UnknownKey,
    announce_order,
    plan,
    plan_revoke,
    plan_rotate,
)
from tokenry.core.keywrap import KekRing
from tokenry.core.signing import PrivateKey, generate_private_key, private_key_to_der, public_jwk
from tokenry.services.keyrotator.config import RotatorConfig
from tokenry.store import idempotency
from tokenry.store.idempotency import IdempotencyKey, IdempotencyRequest, IdempotencyStore, Replay
from tokenry.store.keys import KeyRecord, KeyRow, KeyStore
from tokenry.store.leases import Lease

log = logging.getLogger(__name__)

MAX_REASON = 200
# kids are RFC 7638 thumbprints (43 base64url characters); accept a little more, nothing else.
_KID = re.compile(r"[A-Za-z0-9_-]{1,128}")

Decide = Callable[[list[KeyInfo]], Sequence[Change]]


class KeyFactory:
    """Generates private keys off the event loop (an RSA-3072 key takes ≈ 0.2 s), ahead of the
    transaction that stores them, so the table lock is held for milliseconds only."""

    def __init__(self, generate: Callable[[str], PrivateKey] = generate_private_key) -> None:
        self._generate = generate
        self._stock: dict[str, list[PrivateKey]] = {}

    async def prepare(self, needs: Counter[str]) -> None:
        for alg, count in needs.items():
            stock = self._stock.setdefault(alg, [])
            while len(stock) < count:
                stock.append(await asyncio.to_thread(self._generate, alg))

    def take(self, alg: str) -> PrivateKey:
        stock = self._stock.get(alg)
        return stock.pop() if stock else self._generate(alg)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one key transaction did: its changes as events (in publish order) and the last seq."""

    hints: tuple[KeyHint, ...] = ()
    seq: int = 0

    def kid(self, state: str) -> str:
        """The kid that entered ``state`` in this write, or ""."""
        return next((h.kid for h in self.hints if h.state == state), "")


Respond = Callable[[WriteResult], bytes]


@dataclass(frozen=True, slots=True)
class RotateKeys:
    credentials: Presented
    use: str = ""
    alg: str = ""
    force: bool = False
    # request_id (idempotent retries) and how the adapter serializes the answer, stored with
    # the write in its transaction (store/idempotency.py)
    idem: IdempotencyRequest | None = None
    respond: Respond | None = None


@dataclass(frozen=True, slots=True)
class RevokeKey:
    credentials: Presented
    kid: str
    reason: str = ""
    idem: IdempotencyRequest | None = None
    respond: Respond | None = None


class KeyRotatorHandlers:
    def __init__(
        self,
        *,
        keys: KeyStore,
        config: RotatorConfig,
        subjects: Subjects,
        clock: Clock,
        clients: ClientLookup,
        peppers: dict[str, Pepper],
        factory: KeyFactory | None = None,
        idempotency: IdempotencyStore | None = None,
        assertions: AssertionContext | None = None,
    ) -> None:
        self._keys = keys
        self._assertions = assertions  # private_key_jwt on the admin RPCs (issue 13 item 3)
        self._limiter = FailureLimiter(clock)
        self._idempotency = idempotency  # None: requests carrying a request_id are refused
        self._config = config
        self._ring: KekRing = config.ring
        self._subjects = subjects
        self._clock = clock
        self._clients = clients
        self._peppers = peppers
        self._factory = factory or KeyFactory()
        self._warned: set[str] = set()  # unconfigured active keys already logged

    @property
    def config(self) -> RotatorConfig:
        return self._config

    # Reads -----------------------------------------------------------------------------------

    async def jwks(self) -> tuple[str, int]:
        """The JWK Set (RFC 7517 §5) and the event seq it is current to."""
        keys, seq = await self._keys.published()
        return json.dumps({"keys": keys}, separators=(",", ":")), seq

    async def list_keys(self, *, include_ended: bool = False) -> tuple[list[KeyRow], int]:
        return await self._keys.list_keys(include_ended=include_ended)

    def next_transition_at(self, row: KeyRow) -> float | None:
        """When the policy moves this key next (for ListKeys); None when nothing is scheduled."""
        policy = self._config.policy
        info = row.info()
        if row.state is KeyState.PENDING:
            return info.ready_at(policy)
        if row.state is KeyState.ACTIVE and row.keyset in self._config.keysets:
            return info.rotate_at(policy)
        if row.state is KeyState.RETIRING:
            return info.retire_at(policy)
        return None

    # The leader's schedule ---------------------------------------------------------------------

    async def maintain(self, lease: Lease) -> float | None:
        """Do whatever the schedule says is due, as the leader holding ``lease``.

        Returns when there is next something to do (unix time; None: nothing scheduled).

        Raises:
            LeaseLost: leadership was lost; nothing was written.
        """
        now = self._clock.now()
        rows = await self._keys.live()
        self._warn_unconfigured(rows)
        cfg = self._config

        def decide(keys: list[KeyInfo]) -> Sequence[Change]:
            return plan(keys, cfg.keysets, cfg.policy, now).changes

        scheduled = plan([r.info() for r in rows], cfg.keysets, cfg.policy, now)
        if not scheduled.changes:
            return scheduled.next_due
        await self._write(decide, lease=lease, now=now)
        return now  # look again at once: the next step is computed on the new rows

    # Admin requests ----------------------------------------------------------------------------

    async def rotate(self, req: RotateKeys) -> WriteResult | Replay:
        """Rotate one key set now (needs ``tokenry:admin``).

        With a request_id, a retry of a rotation that committed gets its stored answer
        (:class:`Replay`) instead of rotating again.
        """
        client = await self._admin(req.credentials, "rotating keys")
        idem = await self._idempotent(client, req.idem, req.respond)
        if isinstance(idem, Replay):
            return idem
        keyset = self._keyset(req.use, req.alg)
        now = self._clock.now()
        policy = self._config.policy

        def decide(keys: list[KeyInfo]) -> Sequence[Change]:
            return plan_rotate(keys, keyset, policy, now, force=req.force)

        result = await self._write(decide, lease=None, now=now, actor=client.client_id, idem=idem)
        if isinstance(result, Replay):
            return result
        log.warning(
            "%s rotated %s on demand%s: %s now signs",
            client.client_id,
            keyset,
            " (forced)" if req.force else "",
            result.kid(KeyState.ACTIVE),
        )
        return result

    async def revoke(self, req: RevokeKey) -> WriteResult | Replay:
        """Revoke a key now (needs ``tokenry:admin``); an active one hands over to its successor.

        With a request_id, a retry gets the stored answer (:class:`Replay`).
        """
        client = await self._admin(req.credentials, "revoking keys")
        idem = await self._idempotent(client, req.idem, req.respond)
        if isinstance(idem, Replay):
            return idem
        if not _KID.fullmatch(req.kid):
            raise InvalidRequest("kid must be 1-128 base64url characters")
        if len(req.reason) > MAX_REASON or not req.reason.isprintable():
            raise InvalidRequest(f"reason must be at most {MAX_REASON} printable characters")
        kid = req.kid

        def decide(keys: list[KeyInfo]) -> Sequence[Change]:
            return plan_revoke(keys, kid)

        result = await self._write(
            decide,
            lease=None,
            now=self._clock.now(),
            extra_kid=kid,
            reason=req.reason,
            actor=client.client_id,
            idem=idem,
        )
        if isinstance(result, Replay):
            return result
        if result.hints:
            log.warning(
                "%s revoked key %s; %s",
                client.client_id,
                kid,
                f"{result.kid(KeyState.ACTIVE)} now signs"
                if result.kid(KeyState.ACTIVE)
                else "no active key changed",
            )
        return result

    # Plumbing --------------------------------------------------------------------------------

    async def authenticate(self, credentials: Presented) -> Client:
        """The caller, by client_secret_basic or private_key_jwt (RFC 7523 §2.2)."""
        return await authenticate(
            credentials, self._clients, self._peppers, self._assertions, limiter=self._limiter
        )

    async def _admin(self, credentials: Presented, what: str) -> Client:
        client = await self.authenticate(credentials)
        if ADMIN_SCOPE not in client.scopes:
            raise InsufficientScope(f"{what} needs {ADMIN_SCOPE}")
        return client

    async def _idempotent(
        self, client: Client, idem: IdempotencyRequest | None, respond: Respond | None
    ) -> tuple[IdempotencyKey, Respond] | Replay | None:
        """The caller's idempotency key, or the stored answer of a request that committed (a
        fast path before any work: the rotation it made may forbid another one just now)."""
        if idem is None:
            return None
        if self._idempotency is None or respond is None:
            raise InvalidRequest("this service does not accept request_id")
        key = idem.key(client.client_id)
        stored = await self._idempotency.lookup(key)
        if stored is not None:
            return Replay(stored)
        return key, respond

    def _keyset(self, use: str, alg: str) -> KeySet:
        use = use or "access"
        if not alg:
            configured = [k for k in self._config.keysets if k.use == use]
            if not configured:
                raise NotFound(f"no key set is configured for use {use!r}")
            return configured[0]
        try:
            return KeySet(use, alg)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None

    async def _write(
        self,
        decide: Decide,
        *,
        lease: Lease | None,
        now: float,
        extra_kid: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        idem: tuple[IdempotencyKey, Respond] | None = None,
    ) -> WriteResult | Replay:
        try:
            expected = decide([r.info() for r in await self._keys.live(extra_kid)])
            needs = Counter(c.keyset.alg for c in expected if isinstance(c, NewKey))
            await self._factory.prepare(needs)
            async with self._keys.writer(lease) as writer:
                if idem is not None:
                    # Under the same-key lock: a concurrent retry that committed first wins.
                    stored = await idempotency.claim(writer.conn, idem[0])
                    if stored is not None:
                        return Replay(stored)
                changes = decide([r.info() for r in await writer.load(extra_kid)])
                hints: list[KeyHint] = []
                for change in changes:
                    if isinstance(change, NewKey):
                        record = self._new_record(change)
                        await writer.insert(record, now)
                        hints.append(KeyHint(record.kid, record.alg, change.state.value))
                    else:
                        await writer.transition(change, now, reason=reason, actor=actor)
                        hints.append(KeyHint(change.kid, change.keyset.alg, change.dst.value))
                order = announce_order(KeyState(h.state) for h in hints)
                ordered = tuple(hints[i] for i in order)
                seq = await writer.emit([codec.key_event(self._subjects, h, now) for h in ordered])
                if idem is not None:
                    key, respond = idem
                    await idempotency.record(writer.conn, key, respond(WriteResult(ordered, seq)))
        except LifecycleError as exc:
            raise _oauth_error(exc) from None
        for hint in ordered:
            log.info("key %s (%s) is now %s", hint.kid, hint.alg, hint.state)
        return WriteResult(ordered, seq)

    def _new_record(self, change: NewKey) -> KeyRecord:
        alg = change.keyset.alg
        private = self._factory.take(alg)
        jwk = public_jwk(private, alg)
        kid = str(jwk["kid"])
        sealed, kek_id = self._ring.seal(kid, private_key_to_der(private))
        return KeyRecord(
            kid=kid,
            alg=alg,
            use=change.keyset.use,
            state=change.state.value,
            public_jwk=jwk,
            private_key_sealed=sealed,
            kek_id=kek_id,
        )

    def _warn_unconfigured(self, rows: list[KeyRow]) -> None:
        for row in rows:
            if (
                row.state is KeyState.ACTIVE
                and row.keyset not in self._config.keysets
                and row.kid not in self._warned
            ):
                self._warned.add(row.kid)
                log.warning(
                    "key %s of %s is active but its key set is not configured"
                    " (TOKENRY_KEY_SETS): it is not rotated",
                    row.kid,
                    row.keyset,
                )


def _oauth_error(exc: LifecycleError) -> Exception:
    if isinstance(exc, UnknownKey | NoActiveKey):
        return NotFound(str(exc))
    if isinstance(exc, SuccessorNotReady):
        return TemporarilyUnavailable(str(exc))
    return InvalidRequest(str(exc))


__all__ = [
    "KeyFactory",
    "KeyRotatorHandlers",
    "RevokeKey",
    "RotateKeys",
    "WriteResult",
]
