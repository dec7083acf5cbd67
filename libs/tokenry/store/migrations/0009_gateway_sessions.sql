-- The HTTP gateway's browser features (issue 14, docs/gateway.md).
--
-- Per client: the web origins allowed to call the token, revocation and userinfo endpoints from
-- a browser (CORS, exact "scheme://host[:port]" strings), whether the client is first-party
-- (consent skipped; login still required), and the RP-initiated logout redirect URIs (OIDC
-- RP-Initiated Logout 1.0 §3, exact match).
ALTER TABLE clients
    ADD COLUMN web_origins text[] NOT NULL DEFAULT '{}',
    ADD COLUMN first_party boolean NOT NULL DEFAULT false,
    ADD COLUMN post_logout_redirect_uris text[] NOT NULL DEFAULT '{}';

-- The gateway's login sessions: who signed in on this browser, and when (OIDC Core §3.1.2.1
-- prompt and max_age, auth_time). The cookie holds a random token; only its SHA-256 is stored,
-- so a database read gives no usable session. Logout deletes the row.
CREATE TABLE login_sessions (
    token_hash  bytea PRIMARY KEY,
    subject     text NOT NULL,
    auth_time   bigint NOT NULL,
    expires_at  bigint NOT NULL
);
CREATE INDEX login_sessions_expiry ON login_sessions (expires_at);
