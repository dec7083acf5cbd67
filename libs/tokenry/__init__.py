"""Tokenry: token infrastructure for an internal service mesh.

Packages (dependencies point down):

    tokenry.services.*   issuer, revocation, keyrotator (gRPC services)
    tokenry.{servicekit, verifier, store, bus, devstack, cli}
    tokenry.core         pure domain logic: no grpc, asyncpg, nats or protobuf
"""

__version__ = "0.1.0"
