"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636, OAuth 2.1 §4.1).

Front channel in the login/consent model of Ory Hydra: :meth:`CodeFlow.authorize` validates
the request and parks it behind a single-use login challenge; the gateway's login app
authenticates the user and calls :meth:`CodeFlow.complete`, which issues the code and the
redirect. The issuer never renders a page. :meth:`CodeFlow.redeem` is the token request.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from tokenry.core import authorize, opaque, pkce
from tokenry.core.clients import ADMIN_SCOPE, AUTH_CODE_TTL, LOGIN_SCOPE, Client
from tokenry.core.errors import InsufficientScope, InvalidGrant, InvalidRequest
from tokenry.core.grants import narrow_audiences, narrow_scopes
from tokenry.core.ids import new_gid
from tokenry.core.oidc import OPENID_SCOPE
from tokenry.flows.deps import IssuerDeps, TokenRequest, token_format
from tokenry.flows.family import FamilyStart, issue_first_tokens, revoke_family
from tokenry.flows.minting import TokenResult
from tokenry.store.records import AuthCodeRecord, AuthRequestRecord, GrantRecord

log = logging.getLogger(__name__)

LOGIN_CHALLENGE_TTL = 600  # the user has ten minutes to log in
AUTH_TIME_SKEW = 30
_SUBJECT = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True, slots=True)
class AuthorizeOutcome:
    login_challenge: str = ""
    client_id: str = ""
    requested_scope: str = ""
    redirect_to: str = ""
    error: str = ""
    error_description: str = ""
    #: OIDC Core §3.1.2.1 prompt values and max_age of the request, for the login app to honour
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None

    def __repr__(self) -> str:  # the challenge and the code in redirect_to are credentials
        return f"AuthorizeOutcome(client_id={self.client_id!r}, error={self.error!r})"


@dataclass(frozen=True, slots=True)
class Completion:
    login_challenge: str
    subject: str
    granted_scope: str
    auth_time: int
    deny: bool
    #: with deny: the error to redirect with (OIDC Core §3.1.2.6, e.g. login_required for
    #: prompt=none without a session); access_denied when empty
    error: str = ""

    def __repr__(self) -> str:
        return f"Completion(subject={self.subject!r}, deny={self.deny})"


#: the refusals a login app may report (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6)
DENIAL_ERRORS = frozenset(
    {
        "access_denied",
        "login_required",
        "consent_required",
        "interaction_required",
        "account_selection_required",
    }
)
_DENIAL_TEXT = {
    "login_required": "the user must sign in (prompt=none, or max_age passed)",
    "consent_required": "the user must consent (prompt=none)",
    "interaction_required": "the user must interact with the login page (prompt=none)",
    "account_selection_required": "the user must choose an account (prompt=none)",
}


class CodeFlow:
    def __init__(self, deps: IssuerDeps) -> None:
        self._d = deps

    def _redirect(self, uri: str, params: dict[str, str]) -> str:
        # RFC 9207: iss in every authorization response, so a client can detect mix-up attacks.
        return authorize.add_query(uri, {**params, "iss": self._d.minter.issuer})

    async def authorize(self, req: authorize.AuthorizationRequest) -> AuthorizeOutcome:
        """Validate an authorization request (no client authentication: a public endpoint)."""
        d = self._d
        client = None
        if 0 < len(req.client_id) <= 255:
            client = await d.clients.get_client(req.client_id)
        try:
            valid = authorize.validate(req, client)
        except authorize.RedirectError as exc:
            params = {"error": exc.error, "error_description": exc.description, "state": exc.state}
            return AuthorizeOutcome(
                client_id=req.client_id,
                redirect_to=self._redirect(exc.redirect_uri, params),
                error=exc.error,
                error_description=exc.description,
            )
        challenge = opaque.new_token(opaque.LOGIN_CHALLENGE)
        now = int(d.clock.now())
        await d.requests.save_request(
            AuthRequestRecord(
                challenge_hash=opaque.token_hash(challenge),
                client_id=valid.client_id,
                redirect_uri=valid.redirect_uri,
                scopes=valid.scopes,
                audiences=valid.audiences,
                state=valid.state,
                code_challenge=valid.code_challenge,
                nonce=valid.nonce,
                expires_at=now + LOGIN_CHALLENGE_TTL,
                max_age=valid.max_age,
                login_after=now if "login" in valid.prompt else None,
            )
        )
        return AuthorizeOutcome(
            login_challenge=challenge,
            client_id=valid.client_id,
            requested_scope=" ".join(valid.scopes),
            prompt=valid.prompt,
            max_age=valid.max_age,
        )

    async def complete(self, caller: Client, done: Completion) -> AuthorizeOutcome:
        """Finish a parked request for an authenticated subject: the code and the redirect."""
        d = self._d
        if LOGIN_SCOPE not in caller.scopes and ADMIN_SCOPE not in caller.scopes:
            raise InsufficientScope(f"completing authorizations needs {LOGIN_SCOPE}")
        if opaque.kind_of(done.login_challenge) != opaque.LOGIN_CHALLENGE:
            raise InvalidRequest("unknown or expired login challenge")
        if not done.deny and not _SUBJECT.fullmatch(done.subject):
            raise InvalidRequest("subject must be 1-255 printable ASCII characters")
        if not done.deny and await d.clients.get_client(done.subject) is not None:
            # RFC 9700 §4.15: client-credentials tokens carry the client id as sub, so a user
            # whose subject is a client id could be taken for that client (docs/flows.md §6).
            raise InvalidRequest("the subject is a registered client id; it cannot be a user")
        now = int(d.clock.now())
        auth_time = done.auth_time or now
        if not 0 < auth_time <= now + AUTH_TIME_SKEW:
            raise InvalidRequest("auth_time must be a past unix time")
        async with d.transactions.transaction() as tx:
            req = await tx.take_request(opaque.token_hash(done.login_challenge), now)
            if req is None:
                raise InvalidRequest("unknown or expired login challenge")
            # The granted set is always explicit (docs/flows.md §6): nothing granted is a
            # refusal, the same access_denied the gateway's consent page sends.
            if done.deny or not done.granted_scope.split():
                error = done.error if done.deny and done.error in DENIAL_ERRORS else "access_denied"
                params = {
                    "error": error,
                    "error_description": _DENIAL_TEXT.get(
                        error, "the user or the login provider refused the request"
                    ),
                    "state": req.state,
                }
                return AuthorizeOutcome(
                    client_id=req.client_id,
                    redirect_to=self._redirect(req.redirect_uri, params),
                    error=error,
                    error_description=params["error_description"],
                )
            # Raised inside the transaction: the challenge is not spent, the login app may sign
            # the user in again and complete it.
            _check_freshness(req, done.auth_time, now)
            scopes = narrow_scopes(done.granted_scope, req.scopes)
            code = opaque.new_token(opaque.CODE)
            await tx.save_code(
                AuthCodeRecord(
                    code_hash=opaque.token_hash(code),
                    gid=new_gid(),
                    client_id=req.client_id,
                    redirect_uri=req.redirect_uri,
                    code_challenge=req.code_challenge,
                    subject=done.subject,
                    scopes=scopes,
                    audiences=req.audiences,
                    nonce=req.nonce,
                    auth_time=auth_time,
                    # RFC 6749 §4.1.2: short-lived; docs/spec.md §2: at most 60 s.
                    expires_at=now + AUTH_CODE_TTL,
                ),
            )
        return AuthorizeOutcome(
            client_id=req.client_id,
            requested_scope=" ".join(scopes),
            # RFC 6749 §4.1.2: state exactly as received.
            redirect_to=self._redirect(req.redirect_uri, {"code": code, "state": req.state}),
        )

    async def redeem(self, client: Client, req: TokenRequest) -> TokenResult:
        """The token request of the code grant (RFC 6749 §4.1.3, RFC 7636 §4.5-4.6)."""
        d = self._d
        if not req.code:
            raise InvalidRequest("code is required")
        if not req.redirect_uri:
            raise InvalidRequest("redirect_uri is required (RFC 6749 §4.1.3)")
        if opaque.kind_of(req.code) != opaque.CODE:
            raise InvalidGrant("invalid authorization code")
        fmt = token_format(req.token_format, client)
        d.minter.check_ready(fmt)
        code_hash = opaque.token_hash(req.code)
        reused: AuthCodeRecord | None = None
        burnt = False
        async with d.transactions.transaction() as tx:
            code = await tx.lock_code(code_hash)
            if code is None:
                raise InvalidGrant("invalid authorization code")
            now = d.clock.now()
            if code.used_at is not None:
                reused = code
            elif code.client_id != client.client_id:
                # Policy (RFC 6749 §4.1.3, §10.5; docs/flows.md §6): a code presented by another
                # client has leaked; burn it, as a reuse would, so its owner cannot redeem it
                # either. The burn commits; the refusal follows.
                await tx.mark_code_used(code_hash, int(now))
                burnt = True
            else:
                if now >= code.expires_at:
                    raise InvalidGrant("the authorization code has expired")
                if req.redirect_uri != code.redirect_uri:
                    raise InvalidGrant("redirect_uri differs from the authorization request")
                if not req.code_verifier:
                    # RFC 7636 §4.6 (docs/flows.md §6): a code bound to a challenge is not
                    # redeemable without its verifier: the grant is invalid, as on a mismatch.
                    raise InvalidGrant("code_verifier is required: the code is bound to PKCE")
                pkce.verify(req.code_verifier, code.code_challenge)
                scopes = narrow_scopes(req.scope, code.scopes)
                # RFC 8707 §2.2: resource narrows the access token's audience within the grant.
                audiences = narrow_audiences(req.audiences, code.audiences)
                if OPENID_SCOPE in scopes:
                    d.minter.check_id_ready(client.id_token_alg)
                d.watermarks.check(code.subject, client.client_id, now)
                await tx.mark_code_used(code_hash, int(now))
                grant = GrantRecord(
                    gid=code.gid,
                    client_id=client.client_id,
                    subject=code.subject,
                    scopes=code.scopes,
                    audiences=code.audiences,
                    auth_time=code.auth_time,
                    nonce=code.nonce,
                    created_at=int(now),
                    expires_at=int(now) + client.refresh_token_absolute_ttl,
                )
                await tx.create_grant(grant)
                start = FamilyStart(client, grant, scopes, fmt, now, audiences)
                return await issue_first_tokens(d, tx, start)
        if burnt or reused is None:
            log.warning("a code presented by the wrong client (%s) was burnt", client.client_id)
            raise InvalidGrant("the code was issued to another client")
        # RFC 6749 §4.1.2 / §10.5: a code used twice is stolen; revoke everything issued from it.
        await revoke_family(
            d, reused.gid, actor=client.client_id, reason="authorization code reused"
        )
        raise InvalidGrant("the authorization code was already used; its tokens are revoked")


def _check_freshness(req: AuthRequestRecord, auth_time: int, now: int) -> None:
    """OIDC Core §3.1.2.1: a request with ``max_age`` or ``prompt=login`` demands a sign-in that
    recent; the ID token's auth_time will say when it was, so it must be stated, not assumed."""
    if req.max_age is None and req.login_after is None:
        return
    if not auth_time:
        raise InvalidRequest(
            "this request asks for a fresh sign-in (max_age or prompt=login): auth_time is required"
        )
    if req.max_age is not None and now - auth_time > req.max_age:
        raise InvalidRequest(
            "auth_time is older than the request's max_age: sign the user in again"
        )
    if req.login_after is not None and auth_time < req.login_after:
        raise InvalidRequest("the request asks prompt=login: sign the user in again")
