"""Issuer gRPC servicers: protobuf <-> :mod:`tokenry.flows` only (the issuer's table of contents).

``tokenry.v1.Issuer`` (the use cases live in :mod:`tokenry.flows`, shared with the HTTP gateway):

- ``Token`` -> :meth:`tokenry.flows.TokenEndpoint.token`, which authenticates the client and runs
  its grant: :mod:`~tokenry.flows.client_credentials` (RFC 6749 §4.4),
  :mod:`~tokenry.flows.authorization_code` (§4.1 + RFC 7636), :mod:`~tokenry.flows.refresh` (§6)
  or :mod:`~tokenry.flows.token_exchange` (RFC 8693);
- ``Authorize`` / ``CompleteAuthorization`` -> :class:`tokenry.flows.CodeFlow` (the front channel
  in Hydra's login model).

``tokenry.v1.Clients`` -> :class:`tokenry.services.issuer.client_admin.ClientAdmin` (the registry's
admin RPCs). Wiring (PostgreSQL adapters of the storage ports, NATS listener, maintenance) is in
:mod:`tokenry.services.issuer.app`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from tokenry.core.authorize import AuthorizationRequest
from tokenry.core.clientauth import Presented
from tokenry.core.clients import (
    CLIENT_CREDENTIALS,
    CONFIDENTIAL,
    DEFAULT_ACCESS_TOKEN_TTL,
    DEFAULT_ID_TOKEN_TTL,
    DEFAULT_REFRESH_ABSOLUTE_TTL,
    DEFAULT_REFRESH_IDLE_TTL,
    NO_AUTH,
    PUBLIC,
    SECRET_BASIC,
    Client,
)
from tokenry.core.errors import InvalidRequest
from tokenry.core.opaque import ACCESS as OPAQUE_ACCESS_PREFIX
from tokenry.flows import AuthorizeOutcome, Completion, TokenEndpoint, TokenRequest
from tokenry.servicekit.errors import abort_for, maps_own_errors
from tokenry.servicekit.grpcmeta import caller_credentials
from tokenry.servicekit.idempotency import idempotency_of
from tokenry.servicekit.metrics import IssuedTokens
from tokenry.servicekit.server import Ready
from tokenry.services.issuer.client_admin import ClientAdmin, Created
from tokenry.store.idempotency import Replay
from tokenry.v1 import clients_pb2, clients_pb2_grpc, issuer_pb2, issuer_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True, slots=True)
class IssuerApi:
    handlers: TokenEndpoint
    admin: ClientAdmin


def _caller_credentials(context: Context) -> Presented:
    """Admin and login callers authenticate in the metadata (client_secret_basic)."""
    return caller_credentials(context)


_new_tuple = tuple.__new__


def _token_request(request: issuer_pb2.TokenRequest, creds: Presented) -> TokenRequest:
    # An empty repeated field is never iterated: unpacking one ends in an IndexError raised
    # and caught inside protobuf (≈ 2 k instructions per field).
    audiences = (
        (*request.audience, *request.resource) if request.audience or request.resource else ()
    )
    grant_type = request.grant_type
    if grant_type == CLIENT_CREDENTIALS:
        # RFC 6749 §4.4.2: this grant reads scope, audience/resource and token_format only
        # (flows.client_credentials); the other grants' fields are not read for it. Built as
        # the NamedTuple's generated __new__ builds it, without that frame and its keyword
        # handling (≈ 2.6 k instructions per token; tests/unit/test_iss_transport_requests.py
        # checks it against the keyword-built request, field for field).
        return _new_tuple(
            TokenRequest,
            # code, redirect_uri, code_verifier, refresh_token, subject_token,
            # subject_token_type, actor_token, requested_token_type: empty.
            (
                grant_type,
                request.scope,
                audiences,
                creds,
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                request.token_format,
            ),
        )
    return TokenRequest(
        grant_type=grant_type,
        scope=request.scope,
        audiences=audiences,
        credentials=creds,
        code=request.code,
        redirect_uri=request.redirect_uri,
        code_verifier=request.code_verifier,
        refresh_token=request.refresh_token,
        subject_token=request.subject_token,
        subject_token_type=request.subject_token_type,
        actor_token=request.actor_token,
        requested_token_type=request.requested_token_type,
        token_format=request.token_format,
    )


def _outcome(out: AuthorizeOutcome) -> issuer_pb2.AuthorizeResponse:
    return issuer_pb2.AuthorizeResponse(
        login_challenge=out.login_challenge,
        client_id=out.client_id,
        requested_scope=out.requested_scope,
        redirect_to=out.redirect_to,
        error=out.error,
        error_description=out.error_description,
    )


class IssuerServicer(issuer_pb2_grpc.IssuerServicer):
    """Register with guard(); Token maps its own errors (no wrapper coroutine on the issuance
    hot path)."""

    def __init__(
        self,
        api: Ready[IssuerApi],
        unavailable: tuple[type[BaseException], ...] = (),
        issued: IssuedTokens | None = None,
    ) -> None:
        self._api = api
        self._unavailable = unavailable
        # tokenry.tokens.issued: a dict increment per token, exported at collection time. None
        # when metrics are off (app.py decides): the hot path then pays nothing for it (hashing
        # the Basic header and the label tuple was ~1 % of a JWT's instructions; docs/benchmarks/
        # before_after.md, run 4).
        self._issued = issued

    @maps_own_errors
    async def Token(
        self, request: issuer_pb2.TokenRequest, context: Context
    ) -> issuer_pb2.TokenResponse:
        try:
            handlers = self._api.get().handlers
            creds = caller_credentials(
                context,
                client_id=request.client_id,
                client_secret=request.client_secret,
                assertion_type=request.client_assertion_type,
                assertion=request.client_assertion,
            )
            result = await handlers.token(_token_request(request, creds))
        except Exception as exc:
            await abort_for(context, exc, self._unavailable)
        # Issued, so the client authenticated (or is a registered public client): its id is
        # a bounded label (IssuedTokens caps them); the grant type was accepted, so known.
        if self._issued is not None:
            fmt = "opaque" if result.access_token.startswith(OPAQUE_ACCESS_PREFIX) else "jwt"
            self._issued.add_presented(request.grant_type, fmt, creds)
        # Field by field: upb's keyword constructor costs ≈ 1.1 k instructions more for these
        # five (callgrind).
        response = issuer_pb2.TokenResponse()
        response.access_token = result.access_token
        response.token_type = result.token_type
        response.expires_in = result.expires_in
        response.scope = result.scope
        response.issued_token_type = result.issued_token_type
        # Set only when issued (proto3: an empty string is not sent either way); client
        # credentials issue neither, and each field costs every call.
        if result.refresh_token:
            response.refresh_token = result.refresh_token
        if result.id_token:
            response.id_token = result.id_token
        return response

    async def Authorize(
        self, request: issuer_pb2.AuthorizeRequest, context: Context
    ) -> issuer_pb2.AuthorizeResponse:
        flow = self._api.get().handlers.code_flow
        out = await flow.authorize(
            AuthorizationRequest(
                response_type=request.response_type,
                client_id=request.client_id,
                redirect_uri=request.redirect_uri,
                scope=request.scope,
                state=request.state,
                code_challenge=request.code_challenge,
                code_challenge_method=request.code_challenge_method,
                nonce=request.nonce,
                resources=tuple(request.resource),
            )
        )
        return _outcome(out)

    async def CompleteAuthorization(
        self, request: issuer_pb2.CompleteAuthorizationRequest, context: Context
    ) -> issuer_pb2.AuthorizeResponse:
        handlers = self._api.get().handlers
        caller = await handlers.authenticate(_caller_credentials(context))
        out = await handlers.code_flow.complete(
            caller,
            Completion(
                login_challenge=request.login_challenge,
                subject=request.subject,
                granted_scope=request.granted_scope,
                auth_time=request.auth_time,
                deny=request.deny,
                error=request.error,
            ),
        )
        return _outcome(out)


def client_info(client: Client) -> clients_pb2.ClientInfo:
    return clients_pb2.ClientInfo(
        client_id=client.client_id,
        client_type=client.client_type,
        token_endpoint_auth_method=client.auth_method,
        grant_types=sorted(client.grant_types),
        redirect_uris=list(client.redirect_uris),
        scopes=sorted(client.scopes),
        audiences=list(client.audiences),
        token_format=client.token_format,
        access_token_ttl=client.access_token_ttl,
        id_token_ttl=client.id_token_ttl,
        refresh_token_idle_ttl=client.refresh_token_idle_ttl,
        refresh_token_absolute_ttl=client.refresh_token_absolute_ttl,
        id_token_alg=client.id_token_alg,
        jwks_json=client.jwks_json or "",
        token_exchange_from=sorted(client.token_exchange_from),
        description=client.description,
        web_origins=list(client.web_origins),
        first_party=client.first_party,
        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
    )


def client_spec(info: clients_pb2.ClientInfo) -> Client:
    """A registration request as a Client (secret fields empty; the handler fills them)."""
    client_type = info.client_type or CONFIDENTIAL
    method = info.token_endpoint_auth_method or (NO_AUTH if client_type == PUBLIC else SECRET_BASIC)
    try:
        return Client(
            client_id=info.client_id,
            secret_hash=None,
            pepper_id=None,
            grant_types=frozenset(info.grant_types),
            scopes=frozenset(info.scopes),
            audiences=tuple(info.audiences),
            token_format=info.token_format or "jwt",
            access_token_ttl=info.access_token_ttl or DEFAULT_ACCESS_TOKEN_TTL,
            description=info.description,
            client_type=client_type,
            auth_method=method,
            jwks_json=info.jwks_json or None,
            redirect_uris=tuple(info.redirect_uris),
            id_token_ttl=info.id_token_ttl or DEFAULT_ID_TOKEN_TTL,
            id_token_alg=info.id_token_alg or "RS256",
            refresh_token_idle_ttl=info.refresh_token_idle_ttl or DEFAULT_REFRESH_IDLE_TTL,
            refresh_token_absolute_ttl=(
                info.refresh_token_absolute_ttl or DEFAULT_REFRESH_ABSOLUTE_TTL
            ),
            token_exchange_from=frozenset(info.token_exchange_from),
            web_origins=tuple(info.web_origins),
            first_party=info.first_party,
            post_logout_redirect_uris=tuple(info.post_logout_redirect_uris),
        )
    except ValueError as exc:  # Client.__post_init__ range checks
        raise InvalidRequest(str(exc)) from None


class ClientsServicer(clients_pb2_grpc.ClientsServicer):
    def __init__(self, api: Ready[IssuerApi]) -> None:
        self._api = api

    async def _caller(self, context: Context) -> tuple[ClientAdmin, Client]:
        api = self._api.get()
        return api.admin, await api.handlers.authenticate(_caller_credentials(context))

    async def CreateClient(
        self, request: clients_pb2.CreateClientRequest, context: Context
    ) -> clients_pb2.CreateClientResponse:
        admin, caller = await self._caller(context)
        created = await admin.create(
            caller,
            client_spec(request.client),
            idempotency_of(request, "CreateClient"),
            lambda c: _created(c).SerializeToString(),
        )
        if isinstance(created, Replay):
            return clients_pb2.CreateClientResponse.FromString(created.response)
        return _created(created)

    async def GetClient(
        self, request: clients_pb2.GetClientRequest, context: Context
    ) -> clients_pb2.ClientInfo:
        admin, caller = await self._caller(context)
        return client_info(await admin.get(caller, request.client_id))

    async def ListClients(
        self, request: clients_pb2.ListClientsRequest, context: Context
    ) -> clients_pb2.ListClientsResponse:
        admin, caller = await self._caller(context)
        return clients_pb2.ListClientsResponse(
            clients=[client_info(c) for c in await admin.list(caller)]
        )

    async def UpdateClient(
        self, request: clients_pb2.UpdateClientRequest, context: Context
    ) -> clients_pb2.ClientInfo:
        admin, caller = await self._caller(context)
        info = request.client
        changes = {
            "description": info.description,
            "redirect_uris": tuple(info.redirect_uris),
            "web_origins": tuple(info.web_origins),
            "first_party": info.first_party,
            "post_logout_redirect_uris": tuple(info.post_logout_redirect_uris),
        }
        unknown = set(request.update_mask) - set(changes)
        if unknown:
            raise InvalidRequest(f"update_mask: {sorted(unknown)[0][:40]!r} cannot be updated")
        wanted = {name: changes[name] for name in request.update_mask}
        return client_info(await admin.update(caller, info.client_id, wanted))

    async def DeleteClient(
        self, request: clients_pb2.DeleteClientRequest, context: Context
    ) -> clients_pb2.DeleteClientResponse:
        admin, caller = await self._caller(context)
        seq = await admin.delete(
            caller,
            request.client_id,
            request.reason,
            idempotency_of(request, "DeleteClient"),
            lambda s: clients_pb2.DeleteClientResponse(revocation_seq=s).SerializeToString(),
        )
        if isinstance(seq, Replay):
            return clients_pb2.DeleteClientResponse.FromString(seq.response)
        return clients_pb2.DeleteClientResponse(revocation_seq=seq)


def _created(created: Created) -> clients_pb2.CreateClientResponse:
    return clients_pb2.CreateClientResponse(
        client=client_info(created.client), client_secret=created.secret
    )
