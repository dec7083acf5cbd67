-- RFC 8705 (issue 13 item 4): mutual-TLS client authentication (tls_client_auth, with exactly
-- one registered certificate identifier) and certificate-bound access tokens.

ALTER TABLE clients DROP CONSTRAINT IF EXISTS clients_auth_method_check;
ALTER TABLE clients
    ADD CONSTRAINT clients_auth_method_check
        CHECK (auth_method IN ('client_secret_basic', 'client_secret_post', 'private_key_jwt',
                               'none', 'tls_client_auth')),
    ADD COLUMN tls_client_auth_san_uri text NOT NULL DEFAULT '',
    ADD COLUMN tls_client_auth_subject_dn text NOT NULL DEFAULT '',
    ADD COLUMN tls_client_auth_san_dns text NOT NULL DEFAULT '',
    ADD COLUMN certificate_bound boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT clients_tls_client_auth_one_identity CHECK (
        auth_method <> 'tls_client_auth'
        OR (tls_client_auth_san_uri <> '')::int + (tls_client_auth_subject_dn <> '')::int
           + (tls_client_auth_san_dns <> '')::int = 1
    );
