"""Kubelet exec probe: grpc.health.v1 ``Check`` over TLS.

The kubelet's native ``grpc:`` probe speaks plaintext only, and a Tokenry listener outside dev
mode speaks TLS (mTLS on the key rotator and revocation service), so the Deployments run this
inside the container instead (deploy/k8s/base/kustomization.yaml ships it as the ConfigMap
``tokenry-probe``). It trusts ``TOKENRY_TLS_CA`` and presents the pod's own certificate
(``TOKENRY_TLS_CERT`` / ``TOKENRY_TLS_KEY``, which carry the ``client auth`` usage), so it
passes an mTLS listener too; the server's name is checked against the Service name given.

    python /etc/tokenry/probe/health.py PORT SERVER_NAME

Exit 0: SERVING. 1: reachable but not SERVING, or the call failed. 2: bad arguments or files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.tls import ClientTls

TIMEOUT = 3.0


def check(port: int, server_name: str, env: Mapping[str, str], host: str = "127.0.0.1") -> int:
    ca = env.get("TOKENRY_TLS_CA", "").strip()
    if not ca:
        print("TOKENRY_TLS_CA is not set", file=sys.stderr)
        return 2
    cert, key = env.get("TOKENRY_TLS_CERT", "").strip(), env.get("TOKENRY_TLS_KEY", "").strip()
    try:
        tls = ClientTls(
            Path(ca), Path(cert) if cert else None, Path(key) if key else None, server_name
        )
        channel = tls.secure_channel(f"{host}:{port}")
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    with channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT
            )
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            print(f"health check failed: {code}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(status)
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit():
        print("usage: health.py PORT SERVER_NAME", file=sys.stderr)
        return 2
    return check(int(argv[1]), argv[2], os.environ)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
