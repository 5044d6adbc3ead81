"""The operator's identity in tests: the Helm chart's ServiceAccount and RBAC, and what
the API server's audit log says that identity really did.

The e2e suite runs the operator as the chart's ServiceAccount (never as the admin the
tests themselves use), so a permission missing from ``charts/ferryman`` fails a test;
the audit log of that identity then shows whether the chart grants more than was used.

- ``render``: ``helm template`` of the chart's ServiceAccount and RBAC objects.
- ``provision``: apply them (idempotent) and write a kubeconfig holding a token from
  the TokenRequest API for the ServiceAccount, plus the cluster's CA.
- ``granted`` / ``used`` / ``unused``: (verb, apiGroup, resource[/subresource]) triples
  granted by rendered rules, and used according to audit-log entries.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import localcluster
import yaml

from harness.kube import Cluster

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "ferryman"
OPERATOR_NAMESPACE = "ferryman-system"
RELEASE = "ferryman"
# Provider Secrets the e2e tests give the operator (settings.providers[*].secretName);
# they live in OPERATOR_NAMESPACE and the chart grants `get` on exactly these names.
PROVIDER_SECRETS = ("prom-creds",)
# The notification endpoint Secret the e2e tests give the operator
# (settings.notifications.endpoints[*].secretName), granted the same way.
NOTIFY_SECRETS = ("notify-hmac",)
RBAC_TEMPLATES = ("templates/serviceaccount.yaml", "templates/rbac.yaml")
TOKEN_DURATION = "24h"

Triple = tuple[str, str, str]  # (verb, apiGroup, resource or resource/subresource)


def values(
    *,
    scope: str = "cluster",
    watch_namespaces: Iterable[str] = (),
    secrets: Iterable[str] = (),
    notify_secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Chart values for the identity: ``scope`` cluster|namespaced, the watched
    namespaces, one provider per Secret name in ``secrets`` and one notification endpoint
    per Secret name in ``notify_secrets`` (the addresses are never contacted)."""
    return {
        "rbac": {"create": True, "scope": scope},
        "serviceAccount": {"create": True},
        "watchNamespaces": list(watch_namespaces),
        "settings": {
            "providers": {
                f"p-{name}": {"address": "http://127.0.0.1:9", "secretName": name}
                for name in secrets
            },
            "notifications": {
                "endpoints": {
                    f"n-{name}": {"url": "http://127.0.0.1:9", "secretName": name}
                    for name in notify_secrets
                }
            },
        },
    }


def suite_values() -> dict[str, Any]:
    """The values of the identity the e2e suite's operators run as (release RELEASE):
    every Secret its tests name. Whatever provisions that identity (the suite's fixture,
    the benchmarks' smoke runs inside the suite, the RBAC checks) renders these, since a
    provision with other values replaces the Roles under the tests running beside it (a
    bench smoke dropped the notification Secret's `get` and an e2e test was refused)."""
    return values(secrets=PROVIDER_SECRETS, notify_secrets=NOTIFY_SECRETS)


def render(
    helm_bin: str, vals: dict[str, Any], *, release: str = RELEASE, workdir: Path
) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC objects as ``helm template`` renders them for
    ``release`` in OPERATOR_NAMESPACE (no cluster needed). Raises AssertionError when
    helm fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    values_file = workdir / f"values-{release}.yaml"
    values_file.write_text(yaml.safe_dump(vals))
    args = ["template", release, str(CHART_DIR), "-n", OPERATOR_NAMESPACE, "-f", str(values_file)]
    for t in RBAC_TEMPLATES:
        args += ["--show-only", t]
    proc = subprocess.run([helm_bin, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@dataclass(frozen=True)
class Identity:
    """A ServiceAccount the operator runs as: its user name (as the audit log and
    ``kubectl --as`` spell it) and a kubeconfig that authenticates as it."""

    namespace: str
    name: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def provision(cluster: Cluster, objects: list[dict[str, Any]], *, kubeconfig: Path) -> Identity:
    """Apply the rendered objects (namespace created if missing; safe to repeat and to
    run from several processes), request a token for the ServiceAccount among them and
    write ``kubeconfig`` (0600) with that token and the cluster's server and CA."""
    sa = next(o for o in objects if o["kind"] == "ServiceAccount")
    ns, name = sa["metadata"]["namespace"], sa["metadata"]["name"]
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cluster.apply(objects)
    token = cluster.kubectl(
        "create", "token", name, "-n", ns, f"--duration={TOKEN_DURATION}"
    ).stdout.strip()
    write_kubeconfig(cluster.kubeconfig, kubeconfig, token=token, user=f"{ns}-{name}")
    return Identity(namespace=ns, name=name, kubeconfig=kubeconfig)


def write_kubeconfig(admin: Path, out: Path, *, token: str, user: str) -> None:
    """A kubeconfig with ``admin``'s current cluster (server, CA) and a bearer token."""
    data = yaml.safe_load(admin.read_text())
    ctx_name = data["current-context"]
    ctx = next(c["context"] for c in data["contexts"] if c["name"] == ctx_name)
    cluster = next(c for c in data["clusters"] if c["name"] == ctx["cluster"])
    context = f"ferryman-{user}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": context,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(config))
    tmp.replace(out)


# -- granted vs used -------------------------------------------------------------------


def rules_of(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rule of the Roles and ClusterRoles among ``objects``."""
    return [
        rule
        for o in objects
        if o.get("kind") in ("Role", "ClusterRole")
        for rule in o.get("rules") or []
    ]


def granted(objects: Iterable[dict[str, Any]]) -> set[Triple]:
    """(verb, apiGroup, resource[/subresource]) triples the rules grant. Wildcards are
    kept as ``*`` (the minimality check then reports them as never used)."""
    out: set[Triple] = set()
    for rule in rules_of(objects):
        for verb in rule.get("verbs") or []:
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    out.add((verb, group, resource))
    return out


def read_audit(path: Path, *, user: str, since: dt.datetime) -> Iterator[dict[str, Any]]:
    """Audit events (JSON lines) of ``user`` received at or after ``since`` (aware)."""
    with path.open() as f:
        for line in f:
            if f'"{user}"' not in line:
                continue  # cheap: the log holds every identity of ferryman-system
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            if (event.get("user") or {}).get("username") != user:
                continue
            received = _timestamp(event.get("requestReceivedTimestamp"))
            if received is not None and received >= since:
                yield event


def _timestamp(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _triples(events: Iterable[dict[str, Any]], decision: str) -> set[Triple]:
    out: set[Triple] = set()
    for e in events:
        ref = e.get("objectRef")
        if not ref or not ref.get("resource"):
            continue  # a non-resource URL (discovery, /version)
        if (e.get("annotations") or {}).get("authorization.k8s.io/decision") != decision:
            continue
        resource = ref["resource"]
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        group = ref.get("apiGroup") or ""
        out.add((e["verb"], group, resource))
        if e["verb"] == "patch" and (e.get("responseStatus") or {}).get("code") == 201:
            # A server-side apply that created the object: the API server authorized
            # `create` as well (the audit event names only the request's verb, patch).
            out.add(("create", group, resource))
    return out


def used(events: Iterable[dict[str, Any]]) -> set[Triple]:
    """Triples of the resource requests the authorizer allowed (requests to
    non-resource URLs such as discovery, and denied requests, are not counted). A patch
    answered 201 Created (server-side apply of a new object) also counts as `create`."""
    return _triples(events, "allow")


# The API server's words when an authorization check inside a request fails, e.g. the
# `create` it checks for a server-side apply of a new object.
_CANNOT = re.compile(r'cannot (\S+) resource "([^"]+)" in API group "([^"]*)"')


def denied(events: Iterable[dict[str, Any]]) -> set[Triple]:
    """Triples refused for a missing permission: requests the authorizer refused, and
    checks inside an allowed request that failed with 403 (a server-side apply of a new
    object also needs `create`). Other 403s (admission policies) are not counted."""
    events = list(events)
    out = _triples(events, "forbid")
    for e in events:
        status = e.get("responseStatus") or {}
        match = _CANNOT.search(status.get("message") or "") if status.get("code") == 403 else None
        if match:
            verb, resource, group = match.groups()
            out.add((verb, group, resource))
    return out


def unused(
    granted_: set[Triple], used_: set[Triple], allowed: Iterable[Triple] = ()
) -> set[Triple]:
    """Granted triples never used, minus the allow-list."""
    return granted_ - used_ - set(allowed)


def now() -> dt.datetime:
    """The current time, aware UTC (to compare with audit timestamps)."""
    return dt.datetime.now(dt.UTC)


def audit_log() -> Path:
    """The local control plane's audit log; AssertionError when there is none (a
    cluster given by FERRYMAN_TEST_KUBECONFIG has no log this harness can read)."""
    path = localcluster.Layout().audit_log
    assert path.exists(), f"no audit log at {path}: the local control plane writes it"
    return path


def parse_since(value: str) -> dt.datetime:
    """An ISO-8601 UTC timestamp (``2026-11-30T15:40:00.123456Z``) as an aware datetime."""
    parsed = _timestamp(value)
    assert parsed is not None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def apply_provider_secret(cluster: Cluster, token: str = "s3cret") -> str:
    """The provider Secret the e2e operator may read (bearer ``token``), where the real
    deployment keeps it: in OPERATOR_NAMESPACE, under the name the chart grants `get` on.
    Returns its name."""
    name = PROVIDER_SECRETS[0]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
            "stringData": {"token": token},
        }
    )
    return name
