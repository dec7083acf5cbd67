"""PostgreSQL adapters (asyncpg, plain SQL): clients, keys, revocations, outbox, leases."""
