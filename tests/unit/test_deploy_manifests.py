"""deploy/ validated offline: no cluster, no network, no kubectl (ARCHITECTURE §6).

A small stand-in for `kustomize build` (:func:`build`) gathers each kustomization's resources,
generated ConfigMaps and patches; the checks then hold the manifests to what the code needs:
every container of a Tokenry service gets an environment that ``servicekit.config.load()``
accepts (secrets replaced by valid dummies), probes gRPC health on the port it listens on, and
holds no secret value. The real NATS behaviour of deploy/nats is tested in
tests/integration/test_nats_permissions.py.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tokenry.core.keywrap import Kek
from tokenry.servicekit import config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
NATS_DIR = DEPLOY / "nats"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
BUILDS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
SERVICE_MODULE = re.compile(r"^tokenry\.services\.(\w+)$")

Doc = dict[str, Any]


def _docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _kustomizations() -> list[Path]:
    return sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def _name(doc: Doc) -> str:
    return str(doc["metadata"]["name"])


# --- a small, offline `kustomize build` ------------------------------------------------------------


@dataclass
class Build:
    resources: list[Doc] = field(default_factory=list)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    #: every file a kustomization of this build names (to find stray manifests)
    listed: set[Path] = field(default_factory=set)

    def of_kind(self, kind: str) -> list[Doc]:
        return [r for r in self.resources if r.get("kind") == kind]

    def get(self, kind: str, name: str) -> Doc:
        found = [r for r in self.of_kind(kind) if _name(r) == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def workloads(self) -> Iterator[tuple[Doc, Doc]]:
        """(workload, its pod spec) for every Deployment, StatefulSet and Job."""
        for kind in WORKLOADS:
            for w in self.of_kind(kind):
                yield w, w["spec"]["template"]["spec"]


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge, as far as these patches need it: maps merge, anything else replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def _split_image(image: str) -> tuple[str, str]:
    """(name, tag) of an image reference; a registry port is not a tag."""
    name, sep, tag = image.rpartition(":")
    return (name, tag) if sep and "/" not in tag else (image, "")


def build(kdir: Path) -> Build:
    spec = _docs(kdir / "kustomization.yaml")[0]
    out = Build()
    for entry in spec.get("resources", []):
        path = (kdir / entry).resolve()
        if path.is_dir():
            sub = build(path)
            out.resources += sub.resources
            out.listed |= sub.listed
            for name, data in sub.config_maps.items():
                assert name not in out.config_maps, f"ConfigMap {name} generated twice"
                out.config_maps[name] = data
        else:
            out.resources += _docs(path)
            out.listed.add(path)
    for gen in spec.get("configMapGenerator", []):
        data = dict(lit.split("=", 1) for lit in gen.get("literals", []))
        for f in gen.get("files", []):
            data[Path(f).name] = (kdir / f).read_text()
            out.listed.add((kdir / f).resolve())
        behavior = gen.get("behavior", "create")
        if behavior == "merge":
            out.config_maps[gen["name"]].update(data)
        elif behavior == "replace":
            out.config_maps[gen["name"]] = data
        else:
            assert gen["name"] not in out.config_maps, f"ConfigMap {gen['name']} exists"
            out.config_maps[gen["name"]] = data
    for image in spec.get("images", []):
        for _, pod in out.workloads():
            for c in pod["containers"]:
                name, tag = _split_image(c["image"])
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for patch in spec.get("patches", []):
        path = (kdir / patch["path"]).resolve()
        out.listed.add(path)
        for doc in _docs(path):
            target = out.get(doc["kind"], _name(doc))
            out.resources[out.resources.index(target)] = _merge(target, doc)
    return out


@pytest.fixture(scope="module", params=sorted(BUILDS))
def built(request: pytest.FixtureRequest) -> Build:
    return build(BUILDS[request.param])


# --- files and structure -----------------------------------------------------------------------------


def test_every_yaml_in_deploy_parses_into_objects() -> None:
    files = _yaml_files()
    assert len(files) >= 10
    for path in files:
        docs = _docs(path)
        assert docs, f"{path}: empty"
        assert all(isinstance(d, dict) for d in docs), f"{path}: a document is not a mapping"


def test_every_resource_has_api_version_kind_and_name() -> None:
    for path in _yaml_files():
        for doc in _docs(path):
            where = f"{path.relative_to(REPO)}: {doc.get('kind')}"
            assert doc.get("apiVersion") and doc.get("kind"), where
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), f"{where} has no metadata.name"


def test_every_file_a_kustomization_names_exists() -> None:
    for kdir in _kustomizations():
        spec = _docs(kdir / "kustomization.yaml")[0]
        assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
        assert spec["kind"] == "Kustomization"
        for entry in spec.get("resources", []):
            path = kdir / entry
            assert path.is_file() or (path / "kustomization.yaml").is_file(), f"{kdir}: {entry}"
        for patch in spec.get("patches", []):
            assert (kdir / patch["path"]).is_file(), f"{kdir}: patch {patch['path']}"
        for gen in spec.get("configMapGenerator", []):
            for f in gen.get("files", []):
                assert (kdir / f).is_file(), f"{kdir}: {gen['name']} file {f}"
    # Both entry points build with this stand-in (patch targets exist, merges find their base).
    for kdir in BUILDS.values():
        build(kdir)


def test_every_manifest_is_deployed_except_the_secret_example() -> None:
    listed: set[Path] = set()
    for kdir in BUILDS.values():
        listed |= build(kdir).listed
    manifests = {p.resolve() for p in _yaml_files() if p.name != "kustomization.yaml"}
    assert SECRET_EXAMPLE.resolve() not in listed, "the secret example must never be applied"
    assert manifests - listed == {SECRET_EXAMPLE.resolve()}
    assert {NATS_DIR / "nats.conf", NATS_DIR / "accounts.conf"} <= listed


# --- labels, selectors, ports --------------------------------------------------------------------------


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_the_pods_they_mean(built: Build) -> None:
    pods = {
        _name(w): (w["spec"]["template"]["metadata"]["labels"], spec)
        for w, spec in built.workloads()
    }
    for w, _ in built.workloads():
        if w["kind"] != "Job":
            assert _matches(w["spec"]["selector"]["matchLabels"], pods[_name(w)][0]), _name(w)
    for svc in built.of_kind("Service"):
        chosen = [n for n, (labels, _) in pods.items() if _matches(svc["spec"]["selector"], labels)]
        assert chosen, f"Service {_name(svc)} selects no pods"
        for name in chosen:
            ports = [p for c in pods[name][1]["containers"] for p in c.get("ports", [])]
            for sp in svc["spec"]["ports"]:
                target = sp.get("targetPort", sp["port"])
                assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (
                    f"Service {_name(svc)} port {sp['port']} -> {target}: not a port of {name}"
                )
    budgeted = set()
    for pdb in built.of_kind("PodDisruptionBudget"):
        chosen = [
            n
            for n, (labels, _) in pods.items()
            if _matches(pdb["spec"]["selector"]["matchLabels"], labels)
        ]
        assert chosen, f"PodDisruptionBudget {_name(pdb)} selects no pods"
        budgeted.update(chosen)
    long_running = {_name(w) for w, _ in built.workloads() if w["kind"] != "Job"}
    assert long_running <= budgeted, f"no PodDisruptionBudget: {long_running - budgeted}"


# --- what each Tokenry container needs ------------------------------------------------------------------


@functools.cache
def _secret_example() -> dict[str, dict[str, str]]:
    return {_name(d): dict(d["stringData"]) for d in _docs(SECRET_EXAMPLE)}


def _dummy_secret(name: str, key: str) -> str:
    """A valid value for a documented Secret key (the example holds placeholders only)."""
    assert key in _secret_example().get(name, {}), (
        f"Secret {name} key {key}: not in {SECRET_EXAMPLE.name}"
    )
    if key == "kek":
        return Kek.generate().encoded()
    if key == "pepper":
        return secrets.token_urlsafe(48)
    if key == "uri":
        return "postgresql://tokenry:pw@tokenry-db-rw:5432/tokenry"
    if key.endswith("-password"):
        return "p" + secrets.token_hex(32)
    raise AssertionError(f"no dummy for Secret {name} key {key}")


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _container_env(
    build_: Build, pod: Doc, container: Doc, files: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """The environment as the kubelet gives it (envFrom, env in order, `$(VAR)` expanded), with
    Secret values replaced by dummies and secret files written under ``files``; also the
    Secret key behind each variable or file path."""
    env: dict[str, str] = {}
    origin: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(build_.config_maps[source["configMapRef"]["name"]])
    mounts = {}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        secret = volumes.get(m["name"], {}).get("secret")  # else a claim template
        if secret:
            for item in secret["items"]:
                mounts[f"{m['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            value = _REF.sub(lambda m: env.get(m.group(1), m.group(0)), str(var["value"]))
            assert "$(" not in value, f"{name}: unresolved reference in {var['value']!r}"
            if value in mounts:
                secret_name, key = mounts[value]
                path = files / f"{secret_name}-{key}"
                path.write_text(_dummy_secret(secret_name, key))
                origin[name] = f"{secret_name}/{key}"
                value = str(path)
            env[name] = value
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[name] = _dummy_secret(ref["name"], ref["key"])
            origin[name] = f"{ref['name']}/{ref['key']}"
        else:
            env[name] = "pod-0"  # fieldRef
    return env, origin


def _tokenry_containers(build_: Build) -> Iterator[tuple[str, Doc, Doc, Doc]]:
    """(service, workload, pod spec, container) of each container running a Tokenry service."""
    for w, pod in build_.workloads():
        for c in pod["containers"]:
            cmd = c.get("command", [])
            match = SERVICE_MODULE.match(cmd[2]) if cmd[:2] == ["python", "-m"] else None
            if match:
                yield match.group(1), w, pod, c


def _service_source(service: str, name: str) -> str:
    return (REPO / "services" / service / name).read_text()


def test_tokenry_containers_get_every_setting_config_load_needs(
    built: Build, tmp_path: Path
) -> None:
    deployed = set()
    for service, w, pod, c in _tokenry_containers(built):
        deployed.add(service)
        assert importlib.util.find_spec(f"tokenry.services.{service}") is not None
        assert w["kind"] == "Deployment"
        env, origin = _container_env(built, pod, c, tmp_path)
        need_kek = "need_kek=True" in _service_source(service, "__main__.py")
        settings = config.load(env, need_kek=need_kek)  # raises ConfigError naming what is missing
        assert not settings.dev, f"{service}: dev mode in a deployment"
        assert (settings.kek is not None) == need_kek, f"{service}: the KEK only where it is needed"
        # The NATS user: the relay runs where events are published; everything else only reads.
        user = "publisher" if "OutboxRelay" in _service_source(service, "app.py") else "consumer"
        url = urlsplit(settings.nats_url)
        assert (url.username, url.hostname, url.port) == (user, "nats", 4222), service
        assert url.password == env[f"NATS_{user.upper()}_PASSWORD"]
        assert origin[f"NATS_{user.upper()}_PASSWORD"] == f"tokenry-nats/{user}-password"
        assert built.get("Service", "nats")["spec"]["ports"][0]["port"] == 4222
        # Probes: gRPC health on the very port the service listens on, which the pod exposes.
        _, port = config.listen_addr(service, env)
        exposed = {p["containerPort"] for p in c["ports"]}
        assert port in exposed, f"{service} listens on {port}, exposes {exposed}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == port, f"{service} {probe}"
    assert deployed == {"issuer", "introspector", "revocation", "keyrotator"}


def test_migration_job_runs_tokenry_migrate_against_the_database(
    built: Build, tmp_path: Path
) -> None:
    job = built.get("Job", "tokenry-migrate")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["tokenry", "migrate"]
    env, origin = _container_env(built, pod, container, tmp_path)
    assert urlsplit(env["TOKENRY_DATABASE_URL"]).scheme == "postgresql"
    services = list(_tokenry_containers(built))
    for _, _, pod_, c in services:
        _, service_origin = _container_env(built, pod_, c, tmp_path)
        assert service_origin["TOKENRY_DATABASE_URL"] == origin["TOKENRY_DATABASE_URL"]


def test_pods_run_unprivileged_with_requests(built: Build) -> None:
    for w, pod in built.workloads():
        where = f"{w['kind']}/{_name(w)}"
        assert pod.get("automountServiceAccountToken") is False, where
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, where
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where
            assert _split_image(c["image"])[1] not in ("", "latest"), f"{where}: unpinned image"


# --- NATS --------------------------------------------------------------------------------------------------


def _setting(conf: str, name: str) -> str:
    match = re.search(rf'^\s*{name}:\s*"([^"]+)"', conf, re.M)
    assert match, f"nats.conf has no quoted {name}"
    return match.group(1)


def _nats_vars(text: str) -> set[str]:
    return set(re.findall(r":\s*\$([A-Z_][A-Z0-9_]*)", text))


def test_nats_statefulset_runs_the_tested_config_as_a_three_node_cluster(
    built: Build, tmp_path: Path
) -> None:
    sts = built.get("StatefulSet", "nats")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    replicas = sts["spec"]["replicas"]
    assert replicas == 3
    # The ConfigMap holds deploy/nats's files, byte for byte, mounted where --config points.
    cm = built.config_maps["nats-config"]
    assert cm == {f: (NATS_DIR / f).read_text() for f in ("nats.conf", "accounts.conf")}
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == "nats-config"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert container["args"] == ["--config", f"{mount['mountPath']}/nats.conf"]
    conf = cm["nats.conf"]
    assert 'include "accounts.conf"' in conf  # beside it in the same mount
    # Durable acknowledgements (ARCHITECTURE §4), on the persistent volume.
    assert re.search(r"^\s*sync_interval:\s*always\s*$", conf, re.M)
    store = _setting(conf, "store_dir")
    pid_dir = str(Path(_setting(conf, "pid_file")).parent)
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounted.get(store) in claims, f"store_dir {store} is not on a persistent volume"
    assert pid_dir in mounted, "the lame-duck pid file needs a writable directory"
    # Every variable both files reference is set, and the routes name every replica.
    env, origin = _container_env(built, pod, container, tmp_path)
    assert _nats_vars(conf) | _nats_vars(cm["accounts.conf"]) <= set(env)
    assert origin["NATS_PUBLISHER_PASSWORD"] == "tokenry-nats/publisher-password"
    assert origin["NATS_CONSUMER_PASSWORD"] == "tokenry-nats/consumer-password"
    routes = json.loads(env["NATS_ROUTES"])
    headless = built.get("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert [urlsplit(r).hostname for r in routes] == [
        f"{_name(sts)}-{i}.{_name(headless)}" for i in range(replicas)
    ]
    assert {urlsplit(r).password for r in routes} == {env["NATS_ROUTE_PASSWORD"]}
    assert {urlsplit(r).port for r in routes} == {6222}
    # The event stream is replicated on at most as many nodes as there are.
    stream_replicas = int(built.config_maps["tokenry-config"]["TOKENRY_STREAM_REPLICAS"])
    assert 1 <= stream_replicas <= replicas


# --- production ----------------------------------------------------------------------------------------------


def test_production_replicates_events_and_runs_postgresql_as_an_ha_cluster() -> None:
    prod = build(BUILDS["production"])
    assert prod.config_maps["tokenry-config"]["TOKENRY_STREAM_REPLICAS"] == "3"
    assert prod.config_maps["tokenry-config"]["TOKENRY_ISSUER_URL"].startswith("https://")
    (cluster,) = prod.of_kind("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] >= 3
    # A commit is on a standby before it is acknowledged: failover loses no revocation.
    assert cluster["spec"]["postgresql"]["synchronous"]["number"] >= 1
    # The services read the Secret CloudNativePG creates for this cluster.
    refs = set()
    for _, pod in prod.workloads():
        for c in pod["containers"]:
            for var in c.get("env", []):
                if var["name"] == "TOKENRY_DATABASE_URL":
                    ref = var["valueFrom"]["secretKeyRef"]
                    refs.add((ref["name"], ref["key"]))
    assert refs == {(f"{_name(cluster)}-app", "uri")}
    for name, want in {
        "tokenry-issuer": 3,
        "tokenry-revocation": 3,
        "tokenry-introspector": 3,
        "tokenry-keyrotator": 2,
    }.items():
        assert prod.get("Deployment", name)["spec"]["replicas"] >= want


# --- no secret in the repository ------------------------------------------------------------------------------


SECRETISH = re.compile(r"(PASSWORD|SECRET|KEK|PEPPER|TOKEN|KEY)$")


def test_no_secret_value_is_committed() -> None:
    for kdir in _kustomizations():
        spec = _docs(kdir / "kustomization.yaml")[0]
        assert "secretGenerator" not in spec, f"{kdir}: secrets are created out of band"
    for name, b in ((n, build(p)) for n, p in BUILDS.items()):
        assert not b.of_kind("Secret"), f"{name}: a Secret in the build"
        for _, pod in b.workloads():
            for c in pod["containers"]:
                for var in c.get("env", []):
                    value = str(var.get("value", ""))
                    if SECRETISH.search(var["name"]):
                        assert "value" not in var, f"{var['name']} must come from a Secret"
                    url = urlsplit(value) if "://" in value else None
                    if url is not None and url.password is not None:
                        assert _REF.fullmatch(url.password), f"{var['name']}: a literal password"
    # The example holds placeholders only.
    for data in _secret_example().values():
        for value in data.values():
            assert re.fullmatch(r"<[^<>]+>", value), f"not a placeholder: {value!r}"
    # NATS passwords are environment references, in every config file.
    for conf in DEPLOY.rglob("*.conf"):
        for line in conf.read_text().splitlines():
            match = re.match(r"\s*password:\s*(\S+)", line)
            if match:
                assert re.fullmatch(r"\$[A-Z_][A-Z0-9_]*", match.group(1)), f"{conf}: {line}"
    # No credentials in any URL anywhere under deploy/ but `$(VAR)` or placeholders.
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for m in re.finditer(r"[a-z-]+://[^\s:/@\"']+:([^\s@\"']+)@", path.read_text()):
                assert m.group(1).startswith(("$(", "<")) or m.group(1).isupper(), (
                    f"{path}: {m.group(0)}"
                )
