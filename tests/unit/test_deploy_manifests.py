"""deploy/ validated offline: no cluster, no network, no kubectl (docs/design.md §6).

A small stand-in for `kustomize build` (:func:`build`) gathers each kustomization's resources,
generated ConfigMaps and patches; the checks then hold the manifests to what the code needs:
every container of a Tokenry service gets an environment that passes the start-up checks of
``servicekit.main`` (configuration, TLS on the listener, sslmode=verify-full, TLS to NATS), with
secrets replaced by valid dummies and cert-manager's Secrets by certificates of a test CA carrying
each Certificate's SANs; every Certificate is mounted where the configuration points; probes
check gRPC health over TLS on the port the service listens on; nothing secret is committed. The real NATS behaviour of deploy/nats is tested in
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
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tokenry.core.keywrap import Kek
from tokenry.devstack.ca import CertificateAuthority
from tokenry.servicekit import config, tls
from tokenry.servicekit import variables as v
from tokenry.servicekit.verifier_access import VerifierAccess, compile_id_patterns
from tokenry.services.keyrotator import config as rotator_config
from tokenry.services.revocation.settings import RevocationSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
NATS_DIR = DEPLOY / "nats"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
PROBE = K8S / "base" / "probe" / "health.py"
BUILDS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
SERVICE_MODULE = re.compile(r"^tokenry\.services\.(\w+)$")

Doc = dict[str, Any]


def _docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _yaml_files() -> list[Path]:
    """The Kubernetes manifests (deploy/otel holds Prometheus and Collector configs instead)."""
    return sorted(
        p
        for p in DEPLOY.rglob("*")
        if p.suffix in (".yaml", ".yml") and DEPLOY / "otel" not in p.parents
    )


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
    assert {NATS_DIR / "nats.conf", NATS_DIR / "permissions.conf", PROBE} <= listed


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


@functools.cache
def _test_ca() -> CertificateAuthority:
    """Stands in for the cert-manager Issuer: every Certificate of the build is issued by it."""
    return CertificateAuthority.generate()


def _issued(build_: Build, secret_name: str) -> dict[str, str] | None:
    """The files cert-manager writes into ``secret_name`` (tls.crt, tls.key, ca.crt), issued
    with the Certificate's own SANs; None when no Certificate writes that Secret."""
    found = [c for c in build_.of_kind("Certificate") if c["spec"]["secretName"] == secret_name]
    if not found:
        return None
    (cert,) = found
    spec = cert["spec"]
    issued = _test_ca().issue(
        _name(cert), dns=spec.get("dnsNames", []), ips=(), uris=spec.get("uris", [])
    )
    return {
        "tls.crt": issued.cert_pem.decode(),
        "tls.key": issued.key_pem.decode(),
        "ca.crt": _test_ca().cert_pem.decode(),
    }


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
        # CloudNativePG's `uri`: its read-write Service, no query string.
        return "postgresql://tokenry:pw@tokenry-db-rw.tokenry:5432/tokenry"
    if key == "ca.crt":
        return _test_ca().cert_pem.decode()
    raise AssertionError(f"no dummy for Secret {name} key {key}")


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Container:
    """A container as the kubelet starts it, with its volumes written under a local root."""

    env: dict[str, str]
    #: the Secret key (or ConfigMap) behind each variable, or behind each variable it expands
    origin: dict[str, str]
    #: mount path in the pod -> local directory holding the volume's files
    mounts: dict[str, Path]
    #: mount path -> the Secret (or ConfigMap) mounted there
    sources: dict[str, str]

    def local(self, path: str) -> Path:
        """The local file behind an in-pod path (AssertionError when no volume holds it)."""
        for mount, root in self.mounts.items():
            if path.startswith(mount.rstrip("/") + "/"):
                return root / path[len(mount.rstrip("/")) + 1 :]
        raise AssertionError(f"{path} is on no mounted volume")

    def source_of(self, path: str) -> str:
        for mount, source in self.sources.items():
            if path.startswith(mount.rstrip("/") + "/"):
                return source
        raise AssertionError(f"{path} is on no mounted volume")


def _container(build_: Build, pod: Doc, container: Doc, files: Path) -> Container:
    """The environment as the kubelet gives it (envFrom, env in order, `$(VAR)` expanded), with
    Secret values replaced by valid dummies, cert-manager Secrets by certificates of a test CA,
    and every volume written under ``files``; in-pod paths in the environment point there."""
    root = files / container["name"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    sources: dict[str, str] = {}
    for m in container.get("volumeMounts", []):
        local = root / m["mountPath"].strip("/")
        local.mkdir(parents=True, exist_ok=True)
        mounts[m["mountPath"]] = local
        volume = volumes.get(m["name"], {})  # else a claim template
        if "secret" in volume:
            secret = volume["secret"]
            name = secret["secretName"]
            sources[m["mountPath"]] = f"Secret/{name}"
            data = _issued(build_, name)
            for item in secret["items"]:
                key = item["key"]
                text = data[key] if data is not None else _dummy_secret(name, key)
                (local / item["path"]).write_text(text)
        elif "configMap" in volume:
            name = volume["configMap"]["name"]
            sources[m["mountPath"]] = f"ConfigMap/{name}"
            for key, text in build_.config_maps[name].items():
                (local / key).write_text(text)
    env: dict[str, str] = {}
    origin: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(build_.config_maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            text = str(var["value"])
            refs = [r for r in _REF.findall(text) if r in origin]
            if refs:
                origin[name] = ",".join(origin[r] for r in refs)
            value = _REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)
            assert "$(" not in value, f"{name}: unresolved reference in {var['value']!r}"
            env[name] = value
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[name] = _dummy_secret(ref["name"], ref["key"])
            origin[name] = f"{ref['name']}/{ref['key']}"
        else:
            env[name] = "pod-0"  # fieldRef
    # In-pod paths (whole values, or inside a URL's query) now name the local files.
    if mounts:
        prefixes = sorted((m.rstrip("/") + "/" for m in mounts), key=len, reverse=True)
        local = {m.rstrip("/") + "/": f"{path}/" for m, path in mounts.items()}
        pattern = re.compile(r"(?<![\w/.-])(" + "|".join(map(re.escape, prefixes)) + ")")
        for name, value in env.items():
            env[name] = pattern.sub(lambda m: local[m.group(1)], value)
    return Container(env, origin, mounts, sources)


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


def _start_up_problems(service: str, env: dict[str, str]) -> tuple[config.Settings, list[str]]:
    """What ``servicekit.main.main`` checks before a service starts, on ``env``: the shared
    settings, the listen address, the TLS policy for the listener and for the database URL,
    the service's own options, and (revocation, keyrotator) the verifier access rules. Any
    problem is a pod that exits 2 in a crash loop."""
    reader = config.Reader(env)
    need_kek = "need_kek=True" in _service_source(service, "__main__.py")
    settings = config.read(reader, need_kek=need_kek)
    host, port = config.read_listen(reader, service)
    tls.check_listener(reader, settings.tls, host, port, v.LISTEN[service].name, dev=settings.dev)
    tls.check_database_url(reader, settings.database_url, dev=settings.dev)
    reader.get(v.WORKERS)
    if service == "revocation":
        RevocationSettings.read(reader)
    if service == "keyrotator":
        rotator_config.read(reader, settings)
    if "VerifierAccess" in _service_source(service, "app.py"):
        try:
            VerifierAccess.from_env(env, dev=settings.dev)
        except ValueError as exc:
            reader.problem(str(exc))
    return settings, reader.problems


#: where the control plane is, mTLS is required (docs/security.md, "Transport")
MTLS_SERVICES = {"revocation", "keyrotator"}


def _nats_users() -> dict[str, str]:
    """nats.conf's certificate-mapped users: SPIFFE ID -> permissions variable."""
    text = (NATS_DIR / "nats.conf").read_text()
    conf = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    pairs = re.findall(r'\{\s*user:\s*"([^"]+)",\s*permissions:\s*\$(\w+)\s*\}', conf)
    return dict(pairs)


def _certificate(build_: Build, secret: str) -> Doc:
    (cert,) = [c for c in build_.of_kind("Certificate") if c["spec"]["secretName"] == secret]
    return cert


def test_tokenry_containers_pass_the_start_up_policy(built: Build, tmp_path: Path) -> None:
    """Every service container gets an environment the real start-up checks accept: TLS on its
    non-loopback listener (mTLS on the control plane), PostgreSQL with sslmode=verify-full, TLS
    with a client certificate to NATS. A manifest that would refuse to start fails here."""
    deployed = set()
    for service, w, pod, c in _tokenry_containers(built):
        deployed.add(service)
        if service == "gateway":
            continue  # HTTP, not gRPC: test_gateway_is_deployed_behind_an_ingress_with_tls
        assert importlib.util.find_spec(f"tokenry.services.{service}") is not None
        assert w["kind"] == "Deployment"
        box = _container(built, pod, c, tmp_path)
        settings, problems = _start_up_problems(service, box.env)
        assert problems == [], f"{service} would refuse to start: {problems}"
        need_kek = "need_kek=True" in _service_source(service, "__main__.py")
        assert not settings.dev, f"{service}: dev mode in a deployment"
        assert (settings.kek is not None) == need_kek, f"{service}: the KEK only where it is needed"
        # The listener: TLS from the service's own Certificate, mTLS where the control plane is.
        server = settings.tls.server
        assert server is not None and not settings.tls.terminated_in_front, service
        assert server.client_auth == (service in MTLS_SERVICES), f"{service}: client auth"
        raw = {e["name"]: str(e.get("value", "")) for e in c["env"]}
        secret = box.source_of(raw["TOKENRY_TLS_CERT"]).removeprefix("Secret/")
        cert = _certificate(built, secret)
        assert _name(w) in cert["spec"]["dnsNames"], f"{service}: its Service name is a SAN"
        identity = f"spiffe://cluster.local/ns/tokenry/sa/{pod['serviceAccountName']}"
        assert cert["spec"]["uris"] == [identity], f"{service}: its service account's SPIFFE ID"
        if service in MTLS_SERVICES:
            allowed = compile_id_patterns(box.env["TOKENRY_VERIFIER_ALLOWED_IDS"])
            assert allowed is not None
            # A verifier's identity passes; another Tokenry service's certificate does not.
            assert allowed.fullmatch("spiffe://cluster.local/ns/payments/sa/tokenry-verifier")
            assert not allowed.fullmatch(cert["spec"]["uris"][0])
        # PostgreSQL: verify-full against the mounted CA of the database cluster.
        query = parse_qs(urlsplit(settings.database_url).query)
        assert query["sslmode"] == ["verify-full"], service
        (rootcert,) = query["sslrootcert"]
        assert Path(rootcert).is_file(), f"{service}: sslrootcert {rootcert} is not mounted"
        assert box.origin["TOKENRY_DATABASE_URL"] == "tokenry-db-app/uri"
        # NATS: TLS, this certificate as the client identity, mapped to the right user.
        url = urlsplit(settings.nats_url)
        assert (url.scheme, url.hostname, url.port, url.password) == ("tls", "nats", 4222, None)
        assert "nats" in _certificate(built, "nats-tls")["spec"]["dnsNames"]
        nats_tls = settings.tls.nats
        assert nats_tls is not None and nats_tls.cert is not None, f"{service}: no NATS client cert"
        assert nats_tls.cert == server.cert and nats_tls.ca == server.ca
        user = "PUBLISHER" if "OutboxRelay" in _service_source(service, "app.py") else "CONSUMER"
        assert _nats_users().get(cert["spec"]["uris"][0]) == f"TOKENRY_{user}", service
        # Probes: grpc.health.v1 over TLS, on the port the service listens on, by the name its
        # certificate carries; the kubelet's plaintext `grpc:` probe would never pass.
        _, port = config.listen_addr(service, box.env)
        exposed = {p["containerPort"] for p in c["ports"]}
        assert port in exposed, f"{service} listens on {port}, exposes {exposed}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert "grpc" not in c[probe], f"{service} {probe}: grpc probes are plaintext only"
            python, script, probe_port, server_name = c[probe]["exec"]["command"]
            assert python == "python"
            assert box.source_of(script) == "ConfigMap/tokenry-probe"
            assert box.local(script).read_text() == PROBE.read_text()
            assert int(probe_port) == port, f"{service} {probe}"
            assert server_name in cert["spec"]["dnsNames"], f"{service} {probe}"
            assert c[probe]["timeoutSeconds"] >= 3, "python starts in about half a second"
    assert deployed == {"issuer", "introspector", "revocation", "keyrotator", "gateway"}


def test_gateway_is_deployed_behind_an_ingress_with_tls(built: Build, tmp_path: Path) -> None:
    """The HTTP gateway: an environment its start-up checks accept (HTTPS on its listener from
    its own Certificate, the KEK, verify-full to PostgreSQL, a scrape port), HTTPS probes on
    /health/ready, a Service with the HTTPS and metrics ports, and an Ingress with TLS for the
    issuer URL's host routing to the HTTPS port only."""
    (found,) = [(w, pod, c) for s, w, pod, c in _tokenry_containers(built) if s == "gateway"]
    w, pod, c = found
    box = _container(built, pod, c, tmp_path)
    reader = config.Reader(box.env)
    settings = config.read(reader, need_kek=True)
    host, port = reader.get(v.GATEWAY_LISTEN) or ("0.0.0.0", v.GATEWAY_PORT)
    tls.check_listener(reader, settings.tls, host, port, v.GATEWAY_LISTEN.name, dev=False)
    tls.check_database_url(reader, settings.database_url, dev=False)
    metrics = reader.get(v.METRICS_LISTEN)
    assert reader.problems == [], f"the gateway would refuse to start: {reader.problems}"
    assert "need_kek=True" in _service_source("gateway", "__main__.py")
    assert settings.kek is not None and not settings.dev
    server = settings.tls.server
    assert server is not None and not settings.tls.terminated_in_front
    raw = {e["name"]: str(e.get("value", "")) for e in c["env"]}
    assert box.source_of(raw["TOKENRY_TLS_CERT"]) == "Secret/tokenry-gateway-tls"
    cert = _certificate(built, "tokenry-gateway-tls")
    assert _name(w) in cert["spec"]["dnsNames"]
    assert cert["spec"]["uris"] == [
        f"spiffe://cluster.local/ns/tokenry/sa/{pod['serviceAccountName']}"
    ]
    # Its identity maps to no NATS user: it reads events from PostgreSQL's outbox.
    assert cert["spec"]["uris"][0] not in _nats_users()
    assert parse_qs(urlsplit(settings.database_url).query)["sslmode"] == ["verify-full"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["https"] == port and metrics is not None and ports["metrics"] == metrics[1]
    for probe in ("startupProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == ("/health/ready", "https", "HTTPS")
    assert c["livenessProbe"]["tcpSocket"]["port"] == "https"
    service = built.get("Service", "tokenry-gateway")
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert targets == {"https": "https", "metrics": "metrics"}
    ingress = built.get("Ingress", "tokenry-gateway")
    issuer_host = urlsplit(built.config_maps["tokenry-config"]["TOKENRY_ISSUER_URL"]).hostname
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == issuer_host, "the Ingress serves the issuer URL's host"
    (entry,) = ingress["spec"]["tls"]
    assert entry["hosts"] == [issuer_host] and entry["secretName"]
    backends = {
        (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
        for p in rule["http"]["paths"]
    }
    assert backends == {("tokenry-gateway", "https")}, "never the metrics port"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    # Behind ingress-nginx the TCP peer is the controller's pod: the limiters key on the
    # address it appends to X-Forwarded-For (docs/gateway.md), else one client's failures
    # hold everyone's sign-ins.
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert reader.get(v.TRUSTED_PROXY_HEADER) == "x-forwarded-for"


def test_only_the_gateway_behind_the_ingress_trusts_a_proxy_header(built: Build) -> None:
    """The gRPC services have no proxy in front: a trusted header there would let any caller
    pick its own failure-limiter key."""
    trusting = {
        service
        for service, _, _, c in _tokenry_containers(built)
        if any(e["name"] == v.TRUSTED_PROXY_HEADER.name for e in c.get("env", []))
    }
    config_map = built.config_maps["tokenry-config"]
    assert v.TRUSTED_PROXY_HEADER.name not in config_map
    assert trusting == {"gateway"}


def test_the_kek_is_mounted_only_where_tokens_are_signed_or_keys_wrapped(built: Build) -> None:
    """docs/gateway.md, "The KEK on the gateway": the Secret's `kek` item reaches the issuer and
    the gateway (they mint) and the key rotator (it wraps new keys), and no other pod."""
    holders = set()
    for w, pod in built.workloads():
        for volume in pod.get("volumes", []):
            secret = volume.get("secret", {})
            if secret.get("secretName") == "tokenry-keys":
                assert "items" in secret, f"{_name(w)}: the whole key Secret is mounted"
                if any(item["key"] == "kek" for item in secret["items"]):
                    holders.add(_name(w))
        for c in pod["containers"]:
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef", {})
                assert (ref.get("name"), ref.get("key")) != ("tokenry-keys", "kek"), _name(w)
    assert holders == {"tokenry-issuer", "tokenry-gateway", "tokenry-keyrotator"}


def test_the_start_up_policy_check_catches_a_manifest_that_would_not_start(
    built: Build, tmp_path: Path
) -> None:
    """Negative control for the test above: without the certificate, or without verify-full,
    the same check reports the line the service would exit with."""
    service, _, pod, c = next(_tokenry_containers(built))
    box = _container(built, pod, c, tmp_path)
    plaintext = {k: val for k, val in box.env.items() if not k.startswith("TOKENRY_TLS_")}
    assert any("without TLS" in p for p in _start_up_problems(service, plaintext)[1])
    url = box.env["TOKENRY_DATABASE_URL"].replace("sslmode=verify-full", "sslmode=require")
    problems = _start_up_problems(service, {**box.env, "TOKENRY_DATABASE_URL": url})[1]
    assert any("sslmode=verify-full" in p for p in problems)


def test_every_certificate_is_mounted_where_the_configuration_points(
    built: Build, tmp_path: Path
) -> None:
    """Each Certificate's Secret is mounted as a whole volume (no subPath: renewals must reach
    the files) by the workload it names, and that workload's TLS settings point into it."""
    used: dict[str, str] = {}
    for w, pod in built.workloads():
        for c in pod["containers"]:
            box = _container(built, pod, c, tmp_path / _name(w))
            for m in c.get("volumeMounts", []):
                assert "subPath" not in m, f"{_name(w)}: subPath mounts never see an update"
            for var in c.get("env", []):
                if var["name"].startswith(("TOKENRY_TLS_", "TOKENRY_NATS_TLS_")) and str(
                    var.get("value", "")
                ).startswith("/"):
                    source = box.source_of(var["value"])
                    assert box.local(var["value"]).is_file(), f"{_name(w)}: {var['value']}"
                    used[source.removeprefix("Secret/")] = _name(w)
            if c["name"] == "nats":
                conf = built.config_maps["nats-config"]["nats.conf"]
                for path in re.findall(r'(?:cert|key|ca)_file:\s*"([^"]+)"', conf):
                    assert box.local(path).is_file(), f"nats.conf {path} is not mounted"
                    used[box.source_of(path).removeprefix("Secret/")] = _name(w)
    certificates = [c for c in built.of_kind("Certificate") if not c["spec"].get("isCA")]
    assert len(certificates) == 6
    for cert in certificates:
        spec = cert["spec"]
        assert spec["secretName"] in used, f"Certificate {_name(cert)} is mounted nowhere"
        assert spec["uris"] and all(u.startswith("spiffe://cluster.local/") for u in spec["uris"])
        assert {"server auth", "client auth"} <= set(spec["usages"]), _name(cert)
        assert spec["issuerRef"]["group"] == "cert-manager.io"
        assert spec["issuerRef"]["kind"] in ("Issuer", "ClusterIssuer")
        assert spec["privateKey"]["rotationPolicy"] == "Always"


def test_migration_job_runs_tokenry_migrate_against_the_database(
    built: Build, tmp_path: Path
) -> None:
    job = built.get("Job", "tokenry-migrate")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["tokenry", "migrate"]
    box = _container(built, pod, container, tmp_path / "job")
    url = box.env["TOKENRY_DATABASE_URL"]
    assert urlsplit(url).scheme == "postgresql"
    reader = config.Reader(box.env)
    tls.check_database_url(reader, url, dev=False)
    assert reader.problems == []
    assert Path(parse_qs(urlsplit(url).query)["sslrootcert"][0]).is_file()
    for _, _, pod_, c in _tokenry_containers(built):
        service = _container(built, pod_, c, tmp_path / c["name"])
        assert service.origin["TOKENRY_DATABASE_URL"] == box.origin["TOKENRY_DATABASE_URL"]


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
    """The environment variables a NATS config references (``$NAME`` not defined in it)."""
    defined = set(re.findall(r"^\s*([A-Z_][A-Z0-9_]*)\s*=", text, re.M))
    return set(re.findall(r":\s*\$([A-Z_][A-Z0-9_]*)", text)) - defined


def test_nats_statefulset_runs_the_tested_config_as_a_three_node_cluster(
    built: Build, tmp_path: Path
) -> None:
    sts = built.get("StatefulSet", "nats")
    pod = sts["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "nats")
    replicas = sts["spec"]["replicas"]
    assert replicas == 3
    # The ConfigMap holds deploy/nats's files, byte for byte, mounted where --config points.
    cm = built.config_maps["nats-config"]
    assert cm == {f: (NATS_DIR / f).read_text() for f in ("nats.conf", "permissions.conf")}
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == "nats-config"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert container["args"] == ["--config", f"{mount['mountPath']}/nats.conf"]
    conf = cm["nats.conf"]
    assert 'include "permissions.conf"' in conf  # beside it in the same mount
    # Durable acknowledgements (docs/design.md §4), on the persistent volume.
    assert re.search(r"^\s*sync_interval:\s*always\s*$", conf, re.M)
    store = _setting(conf, "store_dir")
    pid_dir = str(Path(_setting(conf, "pid_file")).parent)
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounted.get(store) in claims, f"store_dir {store} is not on a persistent volume"
    assert pid_dir in mounted, "the lame-duck pid file needs a writable directory"
    # Every variable the config references is set, and the routes name every replica.
    env = _container(built, pod, container, tmp_path).env
    assert _nats_vars(conf + cm["permissions.conf"]) <= set(env)
    routes = json.loads(env["NATS_ROUTES"])
    headless = built.get("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert [urlsplit(r).hostname for r in routes] == [
        f"{_name(sts)}-{i}.{_name(headless)}" for i in range(replicas)
    ]
    # No credentials in a route: the peers authenticate with their certificates.
    assert {(urlsplit(r).username, urlsplit(r).password) for r in routes} == {(None, None)}
    assert {urlsplit(r).port for r in routes} == {6222}
    # Each route host is a SAN of the NATS certificate (the dialling node checks it).
    nats_cert = _certificate(built, "nats-tls")["spec"]
    wildcards = {d for d in nats_cert["dnsNames"] if d.startswith("*.")}
    for r in routes:
        host = urlsplit(r).hostname or ""
        assert "*." + host.split(".", 1)[1] in wildcards, f"route {host} is not in the SANs"
    # The reloader signals nats-server through the pid file in a shared PID namespace.
    assert pod["shareProcessNamespace"] is True
    reloader = next(c for c in pod["containers"] if c["name"] == "tls-reloader")
    assert reloader["image"] == container["image"]
    assert f"--signal reload={_setting(conf, 'pid_file')}" in reloader["args"][0]
    # The event stream is replicated on at most as many nodes as there are.
    stream_replicas = int(built.config_maps["tokenry-config"]["TOKENRY_STREAM_REPLICAS"])
    assert 1 <= stream_replicas <= replicas


def _block(conf: str, opener: str) -> str:
    """The text of the ``opener {…}`` block that starts a line (nested braces balanced)."""
    match = re.search(rf"^\s*{re.escape(opener)}\s*\{{", conf, re.M)
    assert match, f"no {opener} block"
    depth, i = 1, match.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(conf[i], 0)
        i += 1
    return conf[match.end() : i - 1]


def test_nats_requires_tls_and_maps_certificates_to_users() -> None:
    conf = (NATS_DIR / "nats.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    cluster = _block(code, "cluster")
    client_tls = _block(code.replace(cluster, ""), "tls")
    for where, block in (("client", client_tls), ("route", _block(cluster, "tls"))):
        for key in ("cert_file", "key_file", "ca_file"):
            assert re.search(rf'^\s*{key}:\s*"/etc/nats-tls/', block, re.M), f"{where} {key}"
        assert re.search(r"^\s*verify_and_map:\s*true\s*$", block, re.M), where
        assert re.search(r'^\s*min_version:\s*"1\.2"\s*$', block, re.M), where
    # Routes: the peer is the NATS certificate's identity, no password.
    route_user = re.search(r'authorization\s*\{\s*user:\s*"([^"]+)"\s*\}', cluster)
    assert route_user is not None
    assert route_user.group(1) == "spiffe://cluster.local/ns/tokenry/sa/nats"
    # Clients: no password anywhere, users are SPIFFE IDs with the shared permissions, and only
    # the outbox relays get the publisher's.
    assert "password" not in code
    users = _nats_users()
    assert {u for u, perms in users.items() if perms == "TOKENRY_PUBLISHER"} == {
        "spiffe://cluster.local/ns/tokenry/sa/tokenry-revocation",
        "spiffe://cluster.local/ns/tokenry/sa/tokenry-keyrotator",
    }
    assert set(users.values()) == {"TOKENRY_PUBLISHER", "TOKENRY_CONSUMER"}
    assert len(re.findall(r"^\s*\{\s*user:", code, re.M)) == len(users)
    # The permissions are the ones the dev node's password users get (one file for both).
    local = (NATS_DIR / "accounts.conf").read_text()
    assert 'include "permissions.conf"' in local
    assert set(re.findall(r"permissions:\s*\$(\w+)", local)) == set(users.values())
    perms = (NATS_DIR / "permissions.conf").read_text()
    publisher = _block(perms, "TOKENRY_PUBLISHER =")
    consumer = _block(perms, "TOKENRY_CONSUMER =")
    assert '"tokenry.events.>"' in _block(publisher, "publish:")
    assert '"tokenry.heartbeat"' in _block(publisher, "publish:")
    consumer_publish = _block(consumer, "publish:")
    allow = consumer_publish[: consumer_publish.index("deny:")]
    assert "tokenry." not in allow.split("#")[0] and '"tokenry.' not in re.sub(r"#.*", "", allow)
    assert '"tokenry.events.>"' in consumer_publish.split("deny:")[1]
    assert '"tokenry.heartbeat"' in consumer_publish.split("deny:")[1]


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
    refs, cas = set(), set()
    for _, pod in prod.workloads():
        for c in pod["containers"]:
            for var in c.get("env", []):
                if var["name"] == "DB_URI":
                    ref = var["valueFrom"]["secretKeyRef"]
                    refs.add((ref["name"], ref["key"]))
            for volume in pod.get("volumes", []):
                if volume["name"] == "db-ca":
                    cas.add(volume["secret"]["secretName"])
    assert refs == {(f"{_name(cluster)}-app", "uri")}
    # ... and trust the CA CloudNativePG signs its server certificates with.
    assert cas == {f"{_name(cluster)}-ca"}
    # The Issuer every Certificate names exists (a private CA; replace it with your own).
    issuers = {(i["kind"], _name(i)) for i in prod.resources if i.get("kind") in ("Issuer",)}
    for cert in prod.of_kind("Certificate"):
        ref = cert["spec"]["issuerRef"]
        assert (ref["kind"], ref["name"]) in issuers, f"{_name(cert)}: issuer {ref['name']}"
    for name, want in {
        "tokenry-issuer": 3,
        "tokenry-revocation": 3,
        "tokenry-introspector": 3,
        "tokenry-keyrotator": 2,
        "tokenry-gateway": 3,
    }.items():
        assert prod.get("Deployment", name)["spec"]["replicas"] >= want


# --- no secret in the repository ------------------------------------------------------------------------------


SECRETISH = re.compile(r"(PASSWORD|SECRET|KEK|PEPPER|TOKEN|KEY)$")
#: a TLS key's path is no secret (the key is in the mounted file)
FILE_PATH = re.compile(r"/etc/[a-z0-9/-]+\.(key|crt)")


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
                    if SECRETISH.search(var["name"]) and not FILE_PATH.fullmatch(value):
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
            for match in re.finditer(r"password:\s*([^\s,}]+)", line.split("#", 1)[0]):
                assert re.fullmatch(r"\$[A-Z_][A-Z0-9_]*", match.group(1)), f"{conf}: {line}"
    # No credentials in any URL anywhere under deploy/ but `$(VAR)` or placeholders.
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for m in re.finditer(r"[a-z-]+://[^\s:/@\"']+:([^\s@\"']+)@", path.read_text()):
                assert m.group(1).startswith(("$(", "<")) or m.group(1).isupper(), (
                    f"{path}: {m.group(0)}"
                )
