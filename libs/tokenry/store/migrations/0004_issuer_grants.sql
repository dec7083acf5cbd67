-- Issuer: the full client registry, grant families, opaque tokens, authorization codes and
-- requests, and private_key_jwt replay protection (docs/spec.md §2-3, docs/design.md §3).
-- Times that tokens compare against (iat, exp, watermarks) are unix seconds (bigint).

ALTER TABLE clients
    ADD COLUMN client_type text NOT NULL DEFAULT 'confidential'
        CHECK (client_type IN ('confidential', 'public')),
    ADD COLUMN auth_method text NOT NULL DEFAULT 'client_secret_basic'
        CHECK (auth_method IN ('client_secret_basic', 'client_secret_post', 'private_key_jwt',
                               'none')),
    ADD COLUMN jwks jsonb,
    ADD COLUMN redirect_uris text[] NOT NULL DEFAULT '{}',
    ADD COLUMN id_token_ttl integer NOT NULL DEFAULT 600
        CHECK (id_token_ttl BETWEEN 1 AND 3600),
    ADD COLUMN id_token_alg text NOT NULL DEFAULT 'RS256' CHECK (id_token_alg IN ('RS256', 'ES256')),
    ADD COLUMN refresh_token_idle_ttl integer NOT NULL DEFAULT 604800
        CHECK (refresh_token_idle_ttl BETWEEN 1 AND 604800),
    ADD COLUMN refresh_token_absolute_ttl integer NOT NULL DEFAULT 2592000
        CHECK (refresh_token_absolute_ttl BETWEEN 1 AND 2592000),
    ADD COLUMN token_exchange_from text[] NOT NULL DEFAULT '{}';

-- One row per authorization/refresh family (gid). Revoking a family = revoked_at here (the
-- issuer refuses to refresh) plus a grant revocation with its event (verifiers reject its JWTs).
CREATE TABLE grants (
    gid         text PRIMARY KEY,
    client_id   text NOT NULL,
    subject     text NOT NULL,
    scopes      text[] NOT NULL,
    audiences   text[] NOT NULL,
    auth_time   bigint NOT NULL,
    nonce       text NOT NULL DEFAULT '',
    created_at  bigint NOT NULL,  -- unix s: subject/client revocations after it end the family
    expires_at  bigint NOT NULL,  -- absolute refresh lifetime
    revoked_at  timestamptz
);
CREATE INDEX grants_expires_at ON grants (expires_at);
CREATE INDEX grants_client ON grants (client_id);
-- subject revocations end every family of the subject begun before the watermark
CREATE INDEX grants_subject ON grants (subject);

-- Opaque access and refresh tokens: only SHA-256 of the token is stored (docs/spec.md §3). The
-- introspector reads this table (kind, jti, gid, client_id, subject, scopes, audiences,
-- issued_at, expires_at, revoked_at, act).
CREATE TABLE opaque_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    kind        text NOT NULL CHECK (kind IN ('access', 'refresh')),
    jti         text NOT NULL,
    gid         text NOT NULL,
    client_id   text NOT NULL,
    subject     text NOT NULL,
    scopes      text[] NOT NULL,
    audiences   text[] NOT NULL,
    issued_at   bigint NOT NULL,
    expires_at  bigint NOT NULL,
    act         jsonb,
    -- refresh rotation (OAuth 2.1 §4.3.1): when it was spent, the derived successor's hash and
    -- the access token minted with it, so a retry inside the grace gets the same ones (docs/spec.md §3)
    used_at        bigint,
    successor_hash bytea,
    minted         jsonb,
    revoked_at     timestamptz
);
CREATE INDEX opaque_tokens_gid ON opaque_tokens (gid);
CREATE INDEX opaque_tokens_expires_at ON opaque_tokens (expires_at);

-- Pending authorization requests between Authorize and CompleteAuthorization (the login
-- challenge; only its hash is stored).
CREATE TABLE auth_requests (
    challenge_hash        bytea PRIMARY KEY CHECK (length(challenge_hash) = 32),
    client_id             text NOT NULL,
    redirect_uri          text NOT NULL,
    scopes                text[] NOT NULL,
    audiences             text[] NOT NULL,
    state                 text NOT NULL,
    code_challenge        text NOT NULL,
    nonce                 text NOT NULL,
    expires_at            bigint NOT NULL
);
CREATE INDEX auth_requests_expires_at ON auth_requests (expires_at);

-- Authorization codes (RFC 6749 §4.1.2): single use, at most 60 s; the hash only.
CREATE TABLE auth_codes (
    code_hash      bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    gid            text NOT NULL,
    client_id      text NOT NULL,
    redirect_uri   text NOT NULL,
    code_challenge text NOT NULL,
    subject        text NOT NULL,
    scopes         text[] NOT NULL,
    audiences      text[] NOT NULL,
    nonce          text NOT NULL,
    auth_time      bigint NOT NULL,
    expires_at     bigint NOT NULL,
    used_at        bigint
);
CREATE INDEX auth_codes_expires_at ON auth_codes (expires_at);

-- private_key_jwt assertion ids seen, until their exp (RFC 7523 §3 item 7).
CREATE TABLE assertion_jtis (
    client_id  text NOT NULL,
    jti        text NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX assertion_jtis_expires_at ON assertion_jtis (expires_at);
