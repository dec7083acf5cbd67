"""`tokenry jwks` and key management."""

from __future__ import annotations

import json
from typing import Any

import grpc
import typer

from tokenry.cli.common import call
from tokenry.cli.context import service_addr


def jwks() -> None:
    """Print the JWK Set (RFC 7517) published by the key rotator."""
    from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

    addr = service_addr("keyrotator")

    def go(channel: grpc.Channel) -> Any:
        return keyrotator_pb2_grpc.KeyRotatorStub(channel).GetJwks(
            keyrotator_pb2.GetJwksRequest(), timeout=10
        )

    resp = call(addr, go)
    typer.echo(json.dumps(json.loads(resp.jwks_json), indent=2))
