-- Tokenry schema v1: clients, signing keys, revocations, the shared outbox and leases.

CREATE TABLE clients (
    client_id        text PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 255),
    secret_hash      text,
    pepper_id        text,
    grant_types      text[] NOT NULL,
    scopes           text[] NOT NULL,
    audiences        text[] NOT NULL,
    token_format     text NOT NULL DEFAULT 'jwt' CHECK (token_format IN ('jwt', 'opaque')),
    access_token_ttl integer NOT NULL DEFAULT 600 CHECK (access_token_ttl BETWEEN 1 AND 3600),
    description      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((secret_hash IS NULL) = (pepper_id IS NULL))
);

CREATE TABLE signing_keys (
    kid                text PRIMARY KEY,
    alg                text NOT NULL CHECK (alg IN ('ES256', 'EdDSA', 'PS256', 'RS256')),
    use                text NOT NULL CHECK (use IN ('access', 'id')),
    state              text NOT NULL
                       CHECK (state IN ('pending', 'active', 'retiring', 'retired', 'revoked')),
    public_jwk         jsonb NOT NULL,
    -- AES-256-GCM(KEK, PKCS#8 DER, aad = kid); the KEK itself never enters the database.
    private_key_sealed bytea NOT NULL,
    kek_id             text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    activated_at       timestamptz,
    retiring_at        timestamptz,
    retired_at         timestamptz,
    revoked_at         timestamptz
);
-- docs/spec.md §5: at most one active key per (alg, use).
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg, use) WHERE state = 'active';

CREATE TABLE revocations (
    kind       text NOT NULL CHECK (kind IN ('jti', 'grant', 'subject', 'client')),
    value      text NOT NULL,
    not_before bigint NOT NULL DEFAULT 0,
    -- unix seconds after which the entry cannot matter (docs/spec.md §4.7); swept afterwards
    expires_at bigint NOT NULL,
    reason     text NOT NULL DEFAULT '',
    actor      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- outbox seq of the event that announced the latest change of this row
    seq        bigint NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);

-- Gap-free, commit-ordered event sequence (docs/design.md §3): every producer bumps this one row
-- inside its transaction, which serialises event-producing writes. A bigserial would leave holes
-- on rollback and could commit out of order, and verifiers could not tell a gap from a rollback.
CREATE TABLE outbox_counter (
    id  boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL
);
INSERT INTO outbox_counter (id, seq) VALUES (true, 0);

CREATE TABLE outbox (
    seq          bigint PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    subject      text NOT NULL,
    payload      bytea NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Wake the publisher at once (it also polls, in case a notification is missed).
CREATE FUNCTION tokenry_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tokenry_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION tokenry_outbox_notify();

-- Leader leases with a fencing counter (event publisher, key rotator).
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    fence      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
