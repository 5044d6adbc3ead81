"""Hypothesis strategy for the model-server parts of ``spec.serving`` (issue 14 §2):
named ports, probes, volumes and mounts, a security context and env from Secrets, each
within the CRD's bounds and CEL rules (bounds read from crds/ by ``fuzz_schema``). The
fuzzers draw them into every generated ModelVersion, so the admission fuzz has the API
server accept them and the reconcile fuzz has the real operator render them into a
Deployment and Service the API server accepts (no ``ApplyFailed``).

Extra ports keep to 1024-49151 and never repeat the primary port, so they meet a
Rollout's service port (drawn at its bounds 1 and 65535 often) only by a rare chance:
such a pair is a documented misconfiguration (docs/serving-runtimes.md), not a bug.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from cases import fuzz_schema as schema

MV = "ModelVersion"
SP = "spec.serving"
LOWER = "abcdefghijklmnopqrstuvwxyz"
PORT_NAME = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,6})?", fullmatch=True).filter(
    lambda s: s != "http"
)
APP_PROTOCOLS = st.sampled_from(["http", "grpc", "kubernetes.io/h2c", "kubernetes.io/ws", "h2"])
SEGMENT = st.from_regex(r"[a-z0-9_][a-z0-9._-]{0,9}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
QUANTITY = st.sampled_from(["1", "64Mi", "1Gi", "1.5Gi", "500M", "999999999999"])
SUBDOMAIN = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


def _int(path: str) -> st.SearchStrategy[int]:
    node = schema.at(MV, f"{SP}.{path}")
    lo, hi = int(node["minimum"]), int(node["maximum"])
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))


@st.composite
def probe(draw: st.DrawFn, ports: list[str], kind: str) -> dict[str, Any]:
    port = draw(st.one_of(st.none(), st.sampled_from(ports)))
    handler = draw(st.sampled_from(["httpGet", "grpc", "tcpSocket"]))
    body: dict[str, Any] = {} if port is None else {"port": port}
    if handler == "httpGet" and draw(st.booleans()):
        body["path"] = "/" + draw(st.text(LOWER + "/._-", max_size=20))
    if handler == "grpc" and draw(st.booleans()):
        body["service"] = draw(st.text(LOWER + ".", max_size=20))
    out: dict[str, Any] = {handler: body}
    for timing in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold"):
        if draw(st.booleans()):
            out[timing] = draw(_int(f"{kind}.{timing}"))
    if kind == "readinessProbe" and draw(st.booleans()):
        out["successThreshold"] = draw(_int(f"{kind}.successThreshold"))
    elif draw(st.booleans()):
        out["successThreshold"] = 1  # liveness and startup: 1 only
    return out


@st.composite
def extras(draw: st.DrawFn, serving: dict[str, Any]) -> dict[str, Any]:
    """Fields to add to ``serving`` (a generated ModelVersion's): any subset of ports,
    probes, volumes with mounts, securityContext, envFrom, all valid together."""
    out: dict[str, Any] = {}
    primary = serving.get("port", 8080)
    max_ports = int(schema.bound(MV, f"{SP}.ports", "maxItems"))
    names = draw(st.lists(PORT_NAME, max_size=min(3, max_ports), unique=True))
    numbers = draw(
        st.lists(
            st.integers(1024, 49151).filter(lambda p: p != primary),
            min_size=len(names),
            max_size=len(names),
            unique=True,
        )
    )
    if names:
        out["ports"] = [
            {"name": n, "containerPort": p}
            | ({"appProtocol": draw(APP_PROTOCOLS)} if draw(st.booleans()) else {})
            for n, p in zip(names, numbers, strict=True)
        ]
    targets = ["http", *names]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind == "readinessProbe" and "readinessPath" in serving:
            continue
        if draw(st.booleans()):
            out[kind] = draw(probe(targets, kind))
    volume_names = draw(
        st.lists(
            st.from_regex(r"[a-z]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True).filter(
                lambda s: s not in ("model-store", "model-claim")
            ),
            max_size=3,
            unique=True,
        )
    )
    volumes = []
    for n in volume_names:
        source = draw(st.sampled_from(["emptyDir", "memory", "configMap", "secret"]))
        if source == "emptyDir":
            body: dict[str, Any] = {"emptyDir": {}}
        elif source == "memory":
            body = {"emptyDir": {"medium": "Memory", "sizeLimit": draw(QUANTITY)}}
        elif source == "configMap":
            body = {"configMap": {"name": draw(SUBDOMAIN)}}
        else:
            body = {"secret": {"secretName": draw(SUBDOMAIN), "optional": draw(st.booleans())}}
        volumes.append({"name": n, **body})
    if volumes:
        out["volumes"] = volumes
        paths = draw(
            st.lists(
                st.lists(SEGMENT, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s)),
                max_size=len(volumes),
                unique=True,
            ).filter(
                lambda ps: not any(p == "/mnt/models" or p.startswith("/mnt/models/") for p in ps)
            )
        )
        if paths:
            out["volumeMounts"] = [
                {"name": draw(st.sampled_from(volume_names)), "mountPath": p}
                | ({"readOnly": True} if draw(st.booleans()) else {})
                for p in paths
            ]
    if draw(st.booleans()):
        context: dict[str, Any] = {}
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            if draw(st.booleans()):
                context[key] = draw(_int(f"securityContext.{key}"))
        if draw(st.booleans()):
            context["readOnlyRootFilesystem"] = draw(st.booleans())
        if draw(st.booleans()):
            context["capabilities"] = {"add": ["NET_BIND_SERVICE"]}
        out["securityContext"] = context
    if draw(st.booleans()):
        ref = draw(st.sampled_from(["secretRef", "configMapRef"]))
        out["envFrom"] = [{ref: {"name": draw(SUBDOMAIN)}}]
    return out
