"""deploy/otel: the Collector config wires only defined components, the Grafana dashboard shows
what issue 15 asks for, and every metric the alerts and the dashboard use is one the services
export (docs/observability.md lists them). promtool checks the rules themselves
(tests/integration/test_telemetry_scrape.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OTEL = ROOT / "deploy" / "otel"
EXPORTED = {
    "rpc_server_call_duration_seconds",
    "http_server_request_duration_seconds",
    "tokenry_tokens_issued_total",
    "tokenry_client_auth_failures_total",
    "tokenry_outbox_backlog",
    "tokenry_outbox_oldest_unpublished_seconds",
    "tokenry_relay_leader",
    "tokenry_relay_lease_changes_total",
    "tokenry_keys_next_transition_seconds",
    "tokenry_verifier_staleness_seconds",
    "tokenry_verifier_staleness_budget_seconds",
    "tokenry_verifier_consumer_lag",
    "tokenry_verifier_revocation_lag_seconds",
    "tokenry_verifier_revocation_negative_lags_total",
    "tokenry_verifier_verifications_total",
    "tokenry_verifier_cache_hit_ratio",
}
NAME = re.compile(r"\b((?:tokenry|rpc|http)_[a-z_]+?)(?:_bucket|_count|_sum)?\b(?=[{\[)\s]|$)")


LABELS = {
    "tokenry_audience",
    "rpc_method",
    "rpc_grpc_status_code",
    "http_request_method",
    "http_route",
    "http_response_status_code",
}


def _metrics_in(expr: str) -> set[str]:
    return set(NAME.findall(expr)) - LABELS


def test_collector_pipelines_use_defined_components() -> None:
    config = yaml.safe_load((OTEL / "collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], f"{kind[:-1]} {name} is not defined"
    assert "otlp" in config["receivers"]


def test_dashboard_shows_lag_per_verifier_backlog_and_staleness() -> None:
    dash = json.loads((OTEL / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    lag = [e for e in exprs if "tokenry_verifier_revocation_lag_seconds_bucket" in e]
    assert any("histogram_quantile(0.5" in e for e in lag)
    assert any("histogram_quantile(0.99" in e for e in lag)
    assert all("instance" in e for e in lag), "per verifier"
    assert any("tokenry_outbox_backlog" in e for e in exprs)
    assert any("tokenry_verifier_staleness_seconds" in e for e in exprs)
    # the gateway: requests by route template and status, latency by route
    assert any(
        "http_server_request_duration_seconds_count" in e and "http_route" in e for e in exprs
    )
    used = set().union(*(_metrics_in(e) for e in exprs))
    assert used <= EXPORTED, used - EXPORTED


def test_alerts_use_exported_metrics_and_cover_the_issue() -> None:
    rules = yaml.safe_load((OTEL / "alerts.yaml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {
        "TokenryVerifierStale",
        "TokenryOutboxEventsOld",
        "TokenryKeyRotationOverdue",
        "TokenryNoRelayLeader",
        "TokenryAuthFailureSpike",
    } <= names
    used = set().union(*(_metrics_in(r["expr"]) for r in rules))
    assert used <= EXPORTED, used - EXPORTED
    documented = (ROOT / "docs" / "observability.md").read_text()
    assert all(m.removesuffix("_total") in documented for m in used)
