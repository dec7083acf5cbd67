"""Embedded PostgreSQL and NATS servers for development and tests, run as child processes."""

from tokenry.devstack.nats import EmbeddedNats
from tokenry.devstack.postgres import EmbeddedPostgres

__all__ = ["EmbeddedNats", "EmbeddedPostgres"]
