-- Revocations authenticated from a cached client registry (issue 11, throughput): the
-- revocation service authenticates callers against clients cached in memory, and every write
-- re-checks, in its own transaction, that the client row it authenticated against is still the
-- registered one (same secret hash, same JWKS, still tokenry:admin when the request needs it).
-- A stale entry writes nothing for that item (``stale``): the service drops it from its cache
-- and authenticates again from PostgreSQL. So a changed or deleted client can never write
-- through the cache, and authenticating costs no extra round trip.

DROP FUNCTION tokenry_revoke(
    text[], text[], bigint[], bigint[], boolean[], text[], text[], uuid[], text[], bytea[],
    text[], bigint, text[], uuid[], bytea[]);

CREATE FUNCTION tokenry_revoke(
    p_kind text[], p_value text[], p_not_before bigint[], p_expires_at bigint[],
    p_expiry_given boolean[], p_reason text[], p_actor text[],
    p_event_id uuid[], p_subject text[], p_payload bytea[], p_traceparent text[],
    p_now bigint,
    p_idem_caller text[], p_idem_id uuid[], p_idem_hash bytea[],
    -- per item: check the actor's client row (NULL: no check), and what it must still hold
    p_check_actor boolean[], p_actor_secret_hash text[], p_actor_jwks text[],
    p_actor_admin boolean[]
) RETURNS TABLE (
    ord integer, seq bigint, recorded boolean,
    idem_found boolean, idem_hash bytea, idem_response bytea, stale boolean
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cur record;
    s bigint;
    v_now bigint := coalesce(p_now, extract(epoch FROM now())::bigint);
BEGIN
    PERFORM 1 FROM outbox_counter c WHERE c.id FOR UPDATE;
    FOR i IN 1 .. coalesce(cardinality(p_kind), 0) LOOP
        ord := i; seq := NULL; recorded := false; stale := false;
        idem_found := false; idem_hash := NULL; idem_response := NULL;
        IF coalesce(p_check_actor[i], false) AND NOT EXISTS (
            SELECT 1 FROM clients c
            WHERE c.client_id = p_actor[i]
              AND c.secret_hash IS NOT DISTINCT FROM p_actor_secret_hash[i]
              AND c.jwks IS NOT DISTINCT FROM p_actor_jwks[i]::jsonb
              AND (NOT p_actor_admin[i] OR 'tokenry:admin' = ANY (c.scopes))
        ) THEN
            stale := true;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF p_idem_id[i] IS NOT NULL THEN
            SELECT r.body_hash, r.response INTO cur FROM idempotency_records r
            WHERE r.caller = p_idem_caller[i] AND r.request_id = p_idem_id[i]
              AND r.expires_at > now();
            IF FOUND THEN
                idem_found := true; idem_hash := cur.body_hash; idem_response := cur.response;
                RETURN NEXT;
                CONTINUE;
            END IF;
            INSERT INTO idempotency_records AS r (caller, request_id, body_hash, expires_at)
            VALUES (p_idem_caller[i], p_idem_id[i], p_idem_hash[i], now() + interval '24 hours')
            ON CONFLICT (caller, request_id) DO UPDATE  -- an expired record, not yet swept
                SET body_hash = EXCLUDED.body_hash, response = NULL, created_at = now(),
                    expires_at = EXCLUDED.expires_at
                WHERE r.expires_at <= now();
            IF NOT FOUND THEN  -- another kind of write took this id meanwhile
                SELECT r.body_hash, r.response INTO cur FROM idempotency_records r
                WHERE r.caller = p_idem_caller[i] AND r.request_id = p_idem_id[i];
                idem_found := true; idem_hash := cur.body_hash; idem_response := cur.response;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;

        SELECT v.not_before, v.expires_at, v.seq INTO cur FROM revocations v
        WHERE v.kind = p_kind[i] AND v.value = p_value[i];
        IF FOUND AND cur.expires_at > v_now AND cur.not_before >= p_not_before[i]
           AND (NOT p_expiry_given[i] OR cur.expires_at >= p_expires_at[i]) THEN
            seq := cur.seq;
        ELSE
            UPDATE outbox_counter c SET seq = c.seq + 1 WHERE c.id RETURNING c.seq INTO s;
            INSERT INTO revocations AS v (kind, value, not_before, expires_at, reason, actor, seq)
            VALUES (p_kind[i], p_value[i], p_not_before[i], p_expires_at[i], p_reason[i],
                    p_actor[i], s)
            ON CONFLICT (kind, value) DO UPDATE
                SET not_before = GREATEST(v.not_before, EXCLUDED.not_before),
                    expires_at = GREATEST(v.expires_at, EXCLUDED.expires_at),
                    reason = EXCLUDED.reason, actor = EXCLUDED.actor, seq = EXCLUDED.seq,
                    created_at = now();
            INSERT INTO outbox (seq, event_id, subject, payload, traceparent)
            VALUES (s, p_event_id[i], p_subject[i], p_payload[i], p_traceparent[i]);
            seq := s; recorded := true;
        END IF;

        -- Refresh families end where refreshing is decided (grants.revoked_at and the opaque
        -- tokens' revoked_at), which outlive the revocation row: a grant, subject or client
        -- revocation ends every family it covers, in the same transaction (docs/spec.md §3).
        IF p_kind[i] = 'grant' THEN
            WITH g AS (
                UPDATE grants SET revoked_at = now()
                WHERE gid = p_value[i] AND revoked_at IS NULL RETURNING gid
            )
            UPDATE opaque_tokens SET revoked_at = now()
            WHERE gid IN (SELECT gid FROM g) AND revoked_at IS NULL;
        ELSIF p_kind[i] = 'subject' THEN
            WITH g AS (
                UPDATE grants SET revoked_at = now()
                WHERE subject = p_value[i] AND created_at < p_not_before[i]
                  AND revoked_at IS NULL RETURNING gid
            )
            UPDATE opaque_tokens SET revoked_at = now()
            WHERE gid IN (SELECT gid FROM g) AND revoked_at IS NULL;
        ELSIF p_kind[i] = 'client' THEN
            WITH g AS (
                UPDATE grants SET revoked_at = now()
                WHERE client_id = p_value[i] AND created_at < p_not_before[i]
                  AND revoked_at IS NULL RETURNING gid
            )
            UPDATE opaque_tokens SET revoked_at = now()
            WHERE gid IN (SELECT gid FROM g) AND revoked_at IS NULL;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
