"""Pure domain logic: OAuth/JOSE rules, identifiers, secrets, key envelopes.

Nothing here does I/O or imports grpc, asyncpg, nats or protobuf; time is passed in.
"""
