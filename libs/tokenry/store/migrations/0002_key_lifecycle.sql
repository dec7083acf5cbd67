-- Key lifecycle (docs/spec.md §5): one pending successor per key set, who revoked a key and why,
-- sealed-only private keys, destroyed once a key can never sign again.

ALTER TABLE signing_keys
    ADD COLUMN revoke_reason text,
    ADD COLUMN revoked_by    text,
    ALTER COLUMN private_key_sealed DROP NOT NULL;

-- Every active key has exactly one published successor; 0001 already allows one active key.
CREATE UNIQUE INDEX signing_keys_one_pending ON signing_keys (alg, use) WHERE state = 'pending';

-- The column holds sealed blobs only (core/keywrap.py v1: 'tkw1' || nonce || ciphertext+tag),
-- so a PEM ('-----'), a JWK ('{') or a PKCS#8 DER (0x30) can never be stored by mistake.
-- Rows sealed by the walking skeleton have no prefix: NOT VALID leaves them to
-- `tokenry keys rewrap`, which upgrades them.
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_sealed_only CHECK (
    private_key_sealed IS NULL
    OR (substring(private_key_sealed FROM 1 FOR 4) = '\x746b7731'::bytea
        AND length(private_key_sealed) > 32)
) NOT VALID;

-- Retired and revoked keys never sign again: their private key is destroyed (set to NULL) in
-- the transaction that ends them. Every other key keeps it.
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_private_key_kept CHECK (
    private_key_sealed IS NOT NULL OR state IN ('retired', 'revoked')
);

CREATE INDEX signing_keys_published ON signing_keys (use, alg)
    WHERE state IN ('pending', 'active', 'retiring');
