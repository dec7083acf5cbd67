-- An event's occurred_at is the moment its row was written (clock_timestamp()), not the start
-- of the transaction (now()) and not the producer's own clock: the relay stamps it into the
-- envelope at publish time, so the propagation lag a verifier measures (applied − occurred_at)
-- starts at the write (docs/observability.md).
ALTER TABLE outbox ALTER COLUMN created_at SET DEFAULT clock_timestamp();
