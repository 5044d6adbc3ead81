"""Manifests at the edges of the API: invalid ones the API server must reject with a
message that names the problem, and valid edge cases it must accept. Shared by the
e2e test (real API server) and the unit test (the operator's pydantic models)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.images import model_image

Manifest = dict[str, Any]


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def model_version(name: str = "mv", version: str = "1.3.0", model: str = "fraud") -> Manifest:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "version": version,
            "artifact": {"uri": "s3://models/fraud/model.onnx", "digest": digest(version)},
            # fictional on the local control plane; FERRYMAN_TEST_MODEL_IMAGE elsewhere
            "serving": {"image": model_image()},
        },
    }


def rollout(name: str = "ro") -> Manifest:
    return {
        "apiVersion": "ferryman.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "model": "fraud",
            "target": {"version": "1.3.0"},
            "replicas": 3,
            "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "ml-gateway"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}},
            "analysis": {
                "provider": "default",
                "interval": "30s",
                "metrics": [{"name": "error-rate", "query": "sum(rate(x[1m]))", "max": 0.01}],
            },
        },
    }


def metric(name: str) -> Manifest:
    return {"name": name, "query": f"q_{name.replace('-', '_')}", "max": 1}


@dataclass(frozen=True)
class Case:
    name: str
    manifest: Manifest
    message: str = ""  # for invalid cases: a substring the API server's error must contain


def _mv(edit: Callable[[Manifest], None]) -> Manifest:
    m = model_version()
    edit(m["spec"])
    return m


def _ro(edit: Callable[[Manifest], None]) -> Manifest:
    m = rollout()
    edit(m["spec"])
    return m


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    def edit(spec: Manifest) -> None:
        *parents, leaf = path.split(".")
        node: Any = spec
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        key: Any = int(leaf) if leaf.isdigit() else leaf
        if value is _DELETE:
            del node[key]
        else:
            node[key] = copy.deepcopy(value)

    return edit


_DELETE = object()
GRPC_PORT: dict[str, Any] = {"name": "grpc", "containerPort": 9000, "appProtocol": "grpc"}
SHM: dict[str, Any] = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}
SECRET_KEY = {"name": "hf-token", "key": "token"}


def mount(path: str, name: str = "shm") -> dict[str, Any]:
    return {"name": name, "mountPath": path}


# Every serving field at once, within bounds (a valid edge case).
FULL_SERVING: dict[str, Any] = {
    "ports": [
        {"name": "http", "containerPort": 8000, "appProtocol": "kubernetes.io/h2c"},
        GRPC_PORT,
        {"name": "metrics", "containerPort": 8002, "appProtocol": "http"},
        {"name": "stats", "containerPort": 8125, "protocol": "UDP"},
    ],
    "startupProbe": {
        "httpGet": {"path": "/v2/health/ready"},
        "periodSeconds": 10,
        "failureThreshold": 1000,
    },
    "livenessProbe": {"grpc": {"port": "grpc", "service": "inference"}, "timeoutSeconds": 5},
    "readinessProbe": {"tcpSocket": {"port": "http"}, "successThreshold": 2},
    "volumes": [
        SHM,
        {"name": "config", "configMap": {"name": "server-config", "optional": True}},
        {"name": "tls", "secret": {"secretName": "server-tls"}},
        {"name": "cache", "emptyDir": {}},
    ],
    "volumeMounts": [
        mount("/dev/shm"),
        {"name": "config", "mountPath": "/etc/server", "readOnly": True},
        {"name": "tls", "mountPath": "/etc/tls", "readOnly": True, "subPath": "certs"},
        mount("/mnt/models-cache", "cache"),
    ],
    "securityContext": {
        "runAsUser": 1000,
        "runAsGroup": 0,
        "fsGroup": 1000,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_BIND_SERVICE"]},
    },
    "env": [
        {"name": "A", "value": "1"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {**SECRET_KEY, "optional": True}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "server-config", "key": "m"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
    ],
    "envFrom": [
        {"secretRef": {"name": "s3-credentials"}},
        {"prefix": "SERVER_", "configMapRef": {"name": "server-config", "optional": True}},
    ],
    "command": ["tritonserver"],
    "args": ["--model-repository=/mnt/models"],
}
# Env names, keys and downward-API fields just inside what a pod takes (review14 R4-R6):
# accepted, and rendered into a Deployment server-side apply accepts
# (tests/e2e/test_serving_servable.py).
EDGE_ENV: dict[str, Any] = {
    "env": [
        {"name": ".A", "value": "1"},
        {"name": "a..b", "value": "1"},
        {"name": "..A", "value": "1"},  # a pod takes it (relaxed names, GA in 1.34)
        {"name": "-", "value": "1"},
        {"name": "MODEL", "value": "1"},
        {"name": "MODEL_URI_", "value": "1"},
        {"name": "K1", "valueFrom": {"secretKeyRef": {"name": "s", "key": ".k"}}},
        {"name": "K2", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k.."}}},
        {"name": "K3", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "-..-"}}},
        {
            "name": "L1",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']"}},
        },
        {"name": "L2", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{'a' * 63}']"}}},
        {"name": "L3", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['A_b.C-1']"}}},
        {
            "name": "A1",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['Acme.IO/Some_Key']"}},
        },
        {"name": "A2", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['x']"}}},
    ],
    "envFrom": [
        {"prefix": ".P_", "configMapRef": {"name": "c"}},
        {"prefix": "..", "secretRef": {"name": "s"}},
    ],
    "volumes": [{"name": "model-cache", "emptyDir": {}}],
}
SERVICE: dict[str, Any] = {"service": {}}
ISTIO = {"istio": {"hosts": ["fraud.acme.example"]}}
_MESH = {"group": "", "kind": "Service", "name": "ro"}  # the Rollout's live Service


def _parents(*refs: Any) -> Callable[[Manifest], None]:
    """A Gateway parent and ``refs``."""
    return _set("trafficRouting.gatewayAPI.parentRefs", [{"name": "ml-gateway"}, *refs])


SHARED_ROUTE = {"gatewayAPI": {"httpRoute": {"name": "public", "rules": ["predict", "explain"]}}}
SHADOW = {"shadow": {"mirrorPercent": 50, "duration": "15m", "then": "stop"}}
AB_OBJECTIVE = {
    "successes": 'sum(app_converted_users_total{version="{{version}}"})',
    "trials": 'sum(app_exposed_users_total{version="{{version}}"})',
    "direction": "HigherIsBetter",
    "mde": 0.02,
}
AB_DELTA = {  # unit requests: the delta method's per-user sums (docs/experiments.md)
    "users": 'sum(app_ab_users_total{version="{{version}}"})',
    "trialsSquared": 'sum(app_ab_requests_squared_total{version="{{version}}"})',
    "successesSquared": 'sum(app_ab_successes_squared_total{version="{{version}}"})',
    "trialsTimesSuccesses": 'sum(app_ab_requests_times_successes_total{version="{{version}}"})',
}
AB_TEST = {
    "abTest": {
        "users": {"percentOfUsers": {"percent": 10, "userId": {"header": "x-user-id"}}},
        "objective": AB_OBJECTIVE,
    }
}


def _ab(
    users: dict[str, Any] | None = None, routing: Manifest | None = None, **fields: Any
) -> Manifest:
    """A Rollout with the abTest strategy; ``users`` and ``fields`` replace its parts,
    ``routing`` its trafficRouting."""
    ab = copy.deepcopy(AB_TEST["abTest"])
    if users is not None:
        ab["users"] = users
    analysis = fields.pop("analysis", None)
    ab.update(fields)
    m = _ro(_set("strategy", {"abTest": ab}))
    if analysis is _DELETE:
        del m["spec"]["analysis"]
    if routing is not None:
        m["spec"]["trafficRouting"] = copy.deepcopy(routing)
    return m


# Field case 10: names that are valid custom-resource names but cannot name a Service.
DVC = {
    "repo": "https://git.acme.example/data.git",
    "rev": "f00d",
    "path": "data/tx.csv",
    "md5": "0" * 32,
}
LONG_MV_NAME = "mlong-" + "a" * 60 + "-1-2-0"  # 72 characters
ROLLOUT_NAME_MAX = 55  # 63 - len("-preview")

INVALID: list[Case] = [
    # names
    Case(
        "model version name with dots",
        model_version(name="mdots.v1.2.0"),
        "ModelVersion name must be a DNS-1035 label",
    ),
    Case(
        "model version name over 63 characters",
        model_version(name=LONG_MV_NAME),
        "ModelVersion name must be at most 63 characters",
    ),
    Case(
        "model version name starting with a digit",
        model_version(name="1-2-0-mdigit"),
        "ModelVersion name must be a DNS-1035 label",
    ),
    Case(
        "rollout name with dots", rollout(name="fraud.v2"), "Rollout name must be a DNS-1035 label"
    ),
    Case(
        "DVC md5 that is not an md5",
        _mv(_set("lineage.data.dvc", {**DVC, "md5": "A" * 32})),
        "lineage.data.dvc.md5 must be 32 lowercase hex characters",
    ),
    Case(
        "rollout name too long for its -preview Service",
        rollout(name="r" * (ROLLOUT_NAME_MAX + 1)),
        f"Rollout name must be at most {ROLLOUT_NAME_MAX} characters",
    ),
    # ModelVersion
    Case("semver without patch", _mv(_set("version", "1.3")), "version must be a semantic version"),
    Case(
        "semver with v prefix", _mv(_set("version", "v1.3.0")), "version must be a semantic version"
    ),
    Case(
        "digest uppercase hex",
        _mv(_set("artifact.digest", "sha256:" + "A" * 64)),
        "artifact.digest must be 'sha256:' followed by 64 lowercase hex",
    ),
    Case(
        "digest wrong algorithm",
        _mv(_set("artifact.digest", "md5:" + "a" * 32)),
        "artifact.digest must be 'sha256:'",
    ),
    Case("digest too short", _mv(_set("artifact.digest", "sha256:abc")), "artifact.digest must be"),
    Case(
        "unknown URI scheme",
        _mv(_set("artifact.uri", "ftp://models/x.onnx")),
        "artifact.uri must be a URL with scheme s3, gs, https, pvc or oci",
    ),
    Case(
        "URI without scheme",
        _mv(_set("artifact.uri", "models/x.onnx")),
        "artifact.uri must be a URL with scheme",
    ),
    Case(
        "artifact size not a quantity",
        _mv(_set("artifact.size", "20 GB")),
        "artifact.size must be a positive quantity",
    ),
    Case(
        "artifact size zero",
        _mv(_set("artifact.size", "0")),
        "artifact.size must be a positive quantity",
    ),
    Case("missing model", _mv(_set("model", _DELETE)), "spec.model: Required value"),
    Case(
        "model not a DNS label",
        _mv(_set("model", "Fraud_Detector")),
        "model must be a DNS-1123 label",
    ),
    Case(
        "readinessPath without slash",
        _mv(_set("serving.readinessPath", "ready")),
        "readinessPath must start with '/'",
    ),
    Case(
        "serving port out of range",
        _mv(_set("serving.port", 70000)),
        "spec.serving.port: Invalid value",
    ),
    Case(
        "missing serving image",
        _mv(_set("serving.image", _DELETE)),
        "spec.serving.image: Required value",
    ),
    # serving: ports, probes, volumes, security (issue 14 §2)
    Case(
        "duplicate port names",
        _mv(_set("serving.ports", [GRPC_PORT, {**GRPC_PORT, "containerPort": 9001}])),
        "serving.ports names must be unique",
    ),
    Case(
        "repeated container port",
        _mv(_set("serving.ports", [GRPC_PORT, {**GRPC_PORT, "name": "grpc2"}])),
        "serving.ports must not repeat a containerPort and protocol",
    ),
    Case(
        "extra port on the primary port's number",
        _mv(_set("serving.ports", [{"name": "metrics", "containerPort": 8080}])),
        "serving.ports must not repeat serving.port",
    ),
    Case(
        "primary port given twice",
        _mv(
            lambda s: s["serving"].update(
                port=8000, ports=[{"name": "http", "containerPort": 8000}]
            )
        ),
        "give the primary port once",
    ),
    Case(
        "primary port speaking gRPC",
        _mv(
            _set("serving.ports", [{"name": "http", "containerPort": 8000, "appProtocol": "grpc"}])
        ),
        "the primary port (named http) serves HTTP",
    ),
    Case(
        "port name in capitals",
        _mv(_set("serving.ports", [{**GRPC_PORT, "name": "GRPC"}])),
        "serving.ports[].name must be an IANA service name",
    ),
    Case(
        "appProtocol with a space",
        _mv(_set("serving.ports", [{**GRPC_PORT, "appProtocol": "grpc web"}])),
        "appProtocol must be an IANA service name",
    ),
    Case(
        "probe on an undeclared port",
        _mv(_set("serving.readinessProbe", {"grpc": {"port": "grpc"}})),
        "readinessProbe must name a port of the version",
    ),
    Case(
        "probe with two handlers",
        _mv(_set("serving.livenessProbe", {"httpGet": {"path": "/"}, "tcpSocket": {}})),
        "a probe needs exactly one of httpGet, grpc or tcpSocket",
    ),
    Case(
        "readinessPath and readinessProbe",
        _mv(
            lambda s: s["serving"].update(
                readinessPath="/ready", readinessProbe={"httpGet": {"path": "/health"}}
            )
        ),
        "readinessPath is the short form of readinessProbe",
    ),
    Case(
        "liveness success threshold 2",
        _mv(_set("serving.livenessProbe", {"tcpSocket": {}, "successThreshold": 2})),
        "livenessProbe and startupProbe need successThreshold 1",
    ),
    Case(
        "hostPath volume",
        _mv(_set("serving.volumes", [{"name": "node", "hostPath": {"path": "/var/lib"}}])),
        "hostPath volumes are not allowed: a model version must not mount the node",
    ),
    Case(
        "memory emptyDir without size limit",
        _mv(_set("serving.volumes", [{"name": "shm", "emptyDir": {"medium": "Memory"}}])),
        "an emptyDir with medium Memory needs a sizeLimit",
    ),
    Case(
        "mount over the model directory",
        _mv(lambda s: s["serving"].update(volumes=[SHM], volumeMounts=[mount("/mnt/models")])),
        "mountPath must not be /mnt/models or under it",
    ),
    Case(
        "mount under the model directory",
        _mv(lambda s: s["serving"].update(volumes=[SHM], volumeMounts=[mount("/mnt/models/x")])),
        "mountPath must not be /mnt/models or under it",
    ),
    Case(
        "mount path with a dot-dot segment",
        _mv(lambda s: s["serving"].update(volumes=[SHM], volumeMounts=[mount("/tmp/../mnt")])),
        "mountPath must be an absolute path",
    ),
    Case(
        "mount of an undeclared volume",
        _mv(_set("serving.volumeMounts", [mount("/dev/shm")])),
        "every serving.volumeMounts entry must name one of serving.volumes",
    ),
    Case(
        "privileged",
        _mv(_set("serving.securityContext", {"privileged": True})),
        "securityContext.privileged is not allowed",
    ),
    Case(
        "privilege escalation",
        _mv(_set("serving.securityContext", {"allowPrivilegeEscalation": True})),
        "securityContext.allowPrivilegeEscalation is not allowed",
    ),
    Case(
        "added capability outside the allow-list",
        _mv(_set("serving.securityContext", {"capabilities": {"add": ["SYS_ADMIN"]}})),
        'Unsupported value: "SYS_ADMIN"',
    ),
    Case(
        "env value and valueFrom",
        _mv(
            _set(
                "serving.env",
                [{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": SECRET_KEY}}],
            )
        ),
        "an env variable takes value or valueFrom, not both",
    ),
    Case(
        "env name with a space",
        _mv(_set("serving.env", [{"name": "MY VAR", "value": "1"}])),
        "env[].name must be letters, digits",
    ),
    Case(
        "env from a pod field the downward API lacks",
        _mv(_set("serving.env", [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec"}}}])),
        "fieldRef.fieldPath must be a pod field the downward API offers",
    ),
    Case(
        "envFrom without a source",
        _mv(_set("serving.envFrom", [{"prefix": "HF_"}])),
        "envFrom needs exactly one of secretRef or configMapRef",
    ),
    # What a pod refuses, refused by the schema (review14 R4-R6; api/serving_env.py)
    Case(
        "env name repeated",
        _mv(_set("serving.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])),
        "serving.env names must be unique",
    ),
    *(
        Case(
            f"env name {name} (ferryman's)",
            _mv(_set("serving.env", [{"name": name, "value": "1"}])),
            "env[].name must not be MODEL_NAME, MODEL_VERSION, MODEL_URI, MODEL_DIGEST or "
            "MODEL_DIR: ferryman sets them",
        )
        for name in ("MODEL_URI", "MODEL_DIR")
    ),
    *(
        Case(
            f"{source} key {key!r}",
            _mv(
                _set(
                    "serving.env", [{"name": "A", "valueFrom": {source: {"name": "c", "key": key}}}]
                )
            ),
            "keyRef.key must not be '.' or '..' nor start with '..'",
        )
        for source, key in (
            ("secretKeyRef", ".."),
            ("configMapKeyRef", ".."),
            ("configMapKeyRef", "."),
            ("secretKeyRef", "..k"),
        )
    ),
    *(
        Case(
            f"downward-API {kind} key {key!r}",
            _mv(
                _set(
                    "serving.env",
                    [
                        {
                            "name": "A",
                            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.{kind}['{key}']"}},
                        }
                    ],
                )
            ),
            f"the key in metadata.{kind}['key'] must be a qualified name",
        )
        for kind, key in (
            ("labels", "a b"),
            ("labels", "Acme.io/x"),  # a label key's prefix is lowercase
            ("labels", "a" * 64),
            ("annotations", "/x"),
            ("annotations", "acme.io/x/y"),
            ("annotations", "-x"),
        )
    ),
    Case(
        "volume named like the model's claim",
        _mv(_set("serving.volumes", [{"name": "model-claim", "emptyDir": {}}])),
        "the volume names model-store and model-claim are the model directory's",
    ),
    # Rollout: target
    Case(
        "both target forms",
        _ro(_set("target", {"version": "1.3.0", "track": "latest"})),
        "target needs exactly one of version",
    ),
    Case("no target form", _ro(_set("target", {})), "target needs exactly one of version"),
    Case("unknown track", _ro(_set("target", {"track": "newest"})), 'Unsupported value: "newest"'),
    Case(
        "target version not semver",
        _ro(_set("target", {"version": "latest"})),
        "target.version must be a semantic version",
    ),
    Case(
        "pre-releases opt-in with a pinned version",
        _ro(_set("target", {"version": "1.3.0", "includePrereleases": True})),
        "target.includePrereleases applies only with track: latest",
    ),
    Case("missing rollout model", _ro(_set("model", _DELETE)), "spec.model: Required value"),
    # strategy and routing
    Case(
        "two strategies",
        _ro(_set("strategy.blueGreen", {})),
        "strategy needs exactly one of canary, blueGreen, shadow or abTest",
    ),
    Case("no strategy", _ro(_set("strategy", {})), "strategy needs exactly one of canary"),
    Case(
        "abTest and canary",
        _ro(_set("strategy.abTest", AB_TEST["abTest"])),
        "strategy needs exactly one of canary, blueGreen, shadow or abTest",
    ),
    Case(
        "abTest without analysis",
        _ab(analysis=_DELETE),
        "strategy.abTest needs spec.analysis",
    ),
    Case("abTest without users", _ab(users={}), "abTest.users needs exactly one of header"),
    Case(
        "abTest with a header and a cookie cohort",
        _ab(
            users={
                "header": {"name": "x-beta", "value": "1"},
                "cookie": {"name": "b", "value": "1"},
            }
        ),
        "abTest.users needs exactly one of header, cookie or percentOfUsers",
    ),
    Case(
        "abTest uppercase header name",
        _ab(users={"header": {"name": "X-Beta", "value": "1"}}),
        "abTest header names must be lowercase",
    ),
    Case(
        "abTest cookie matched as a header",
        _ab(users={"header": {"name": "cookie", "value": "beta=1"}}),
        "to match a cookie, use cookie",
    ),
    Case(
        "abTest cookie value with a semicolon",
        _ab(users={"cookie": {"name": "beta", "value": "1;x=2"}}),
        "abTest cookie value must be",
    ),
    Case(
        "abTest cookie name with a space",
        _ab(users={"cookie": {"name": "be ta", "value": "1"}}),
        "abTest cookie names must be",
    ),
    Case(
        "abTest header value with a trailing space",
        _ab(users={"header": {"name": "x-beta", "value": "yes "}}),
        "abTest header value must be visible ASCII",
    ),
    Case(
        "abTest user id in a header and a cookie",
        _ab(
            users={
                "percentOfUsers": {"percent": 10, "userId": {"header": "x-user", "cookie": "uid"}}
            }
        ),
        "abTest userId needs exactly one of header or cookie",
    ),
    Case(
        "abTest 100 percent of users",
        _ab(users={"percentOfUsers": {"percent": 100, "userId": {"cookie": "uid"}}}),
        "percent",
    ),
    Case(
        "abTest zero MDE",
        _ab(objective={**AB_OBJECTIVE, "mde": 0}),
        "mde",
    ),
    Case(
        "abTest unknown direction",
        _ab(objective={**AB_OBJECTIVE, "direction": "Up"}),
        "direction",
    ),
    Case(
        "abTest blank objective query",
        _ab(objective={**AB_OBJECTIVE, "trials": " "}),
        "abTest objective query must not be empty",
    ),
    Case(
        "abTest unit requests without the delta method's sums",
        _ab(objective={**AB_OBJECTIVE, "unit": "requests"}),
        "abTest objective: unit requests needs deltaMethod",
    ),
    Case(
        "abTest delta method's sums with unit users",
        _ab(objective={**AB_OBJECTIVE, "deltaMethod": AB_DELTA}),
        "and only unit requests takes it",
    ),
    Case(
        "abTest delta method without its cross products",
        _ab(
            objective={
                **AB_OBJECTIVE,
                "unit": "requests",
                "deltaMethod": {k: v for k, v in AB_DELTA.items() if k != "trialsTimesSuccesses"},
            }
        ),
        "trialsTimesSuccesses",
    ),
    Case(
        "abTest duration in days",
        _ab(duration="14d"),
        "abTest.duration must be a duration",
    ),
    Case(
        "abTest report or promote only",
        _ab(onCandidateWins="rollback"),
        "onCandidateWins",
    ),
    Case(
        "no router",
        _ro(_set("trafficRouting", {})),
        "trafficRouting needs exactly one router: gatewayAPI, istio or service",
    ),
    Case(
        "two routers",
        _ro(_set("trafficRouting.service", {})),
        "trafficRouting needs exactly one router",
    ),
    Case(
        "gatewayAPI without parentRefs",
        _ro(_set("trafficRouting", {"gatewayAPI": {}})),
        "gatewayAPI needs exactly one of parentRefs (ferryman creates the HTTPRoute) or httpRoute",
    ),
    # a route shared with its owners (issue 15): named rules, never an index
    Case(
        "httpRoute and parentRefs",
        _ro(_set("trafficRouting.gatewayAPI.httpRoute", {"name": "public", "rules": ["a"]})),
        "gatewayAPI needs exactly one of parentRefs",
    ),
    Case(
        "httpRoute rule by index",
        _ro(_set("trafficRouting", {"gatewayAPI": {"httpRoute": {"name": "p", "rules": ["0"]}}})),
        "rules are named, not indexed",
    ),
    Case(
        "httpRoute rule named twice",
        _ro(
            _set(
                "trafficRouting", {"gatewayAPI": {"httpRoute": {"name": "p", "rules": ["a", "a"]}}}
            )
        ),
        "httpRoute.rules must not repeat a name",
    ),
    # east-west (GAMMA, issue 15 §2): the Service parent is the Rollout's live Service
    Case(
        "Service parent naming another Service",
        _ro(_parents({**_MESH, "name": "other"})),
        "a Service parent of gatewayAPI.parentRefs must be the Rollout's live Service",
    ),
    Case(
        "Service parent without group",
        _ro(_parents({"kind": "Service", "name": "ro"})),
        "gatewayAPI.parentRefs[].group must be",
    ),
    Case(
        "Service parent with a port",
        _ro(_parents({**_MESH, "port": 8080})),
        "a Service parent is the Rollout's live Service, in its namespace",
    ),
    Case(
        "parent of another kind",
        _ro(_parents({"kind": "Mesh", "name": "m"})),
        "gatewayAPI.parentRefs[].kind must be Gateway",
    ),
    Case(
        "hostnames with httpRoute",
        _ro(
            _set(
                "trafficRouting",
                {
                    "gatewayAPI": {
                        "httpRoute": {"name": "p", "rules": ["a"]},
                        "hostnames": ["a.example"],
                    }
                },
            )
        ),
        "gatewayAPI.hostnames belong to the HTTPRoute ferryman creates",
    ),
    Case(
        "virtualService and hosts",
        _ro(
            _set(
                "trafficRouting",
                {"istio": {"hosts": ["h"], "virtualService": {"name": "p", "routes": ["a"]}}},
            )
        ),
        "istio needs exactly one of hosts",
    ),
    Case(
        "virtualService route by index",
        _ro(_set("trafficRouting", {"istio": {"virtualService": {"name": "p", "routes": ["2"]}}})),
        "rules are named, not indexed",
    ),
    # canary steps
    Case(
        "weight 120",
        _ro(_set("strategy.canary.steps.0", {"setWeight": 120})),
        "setWeight in body should be less than or equal to 100",
    ),
    Case(
        "weight -1",
        _ro(_set("strategy.canary.steps.0", {"setWeight": -1})),
        "setWeight in body should be greater than or equal to 0",
    ),
    Case(
        "step with two actions",
        _ro(_set("strategy.canary.steps.0", {"setWeight": 10, "pause": {}})),
        "each canary step needs exactly one action: setWeight or pause",
    ),
    Case(
        "step with no action",
        _ro(_set("strategy.canary.steps.0", {})),
        "each canary step needs exactly one action",
    ),
    Case(
        "duration 'five'",
        _ro(_set("strategy.canary.steps.1", {"pause": {"duration": "five"}})),
        "pause.duration must be a duration such as 30s, 2m or 1h30m",
    ),
    Case(
        "duration without unit",
        _ro(_set("strategy.canary.steps.1", {"pause": {"duration": "30"}})),
        "pause.duration must be a duration",
    ),
    Case("no steps", _ro(_set("strategy.canary.steps", [])), "should have at least 1 items"),
    Case(
        "33 steps",
        _ro(_set("strategy.canary.steps", [{"setWeight": 1}] * 33)),
        "must have at most 32 items",
    ),
    # mirroring
    Case(
        "shadow with service routing",
        _ro(
            lambda s: s.update(
                strategy=copy.deepcopy(SHADOW), trafficRouting=copy.deepcopy(SERVICE)
            )
        ),
        "strategy.shadow needs a router that can mirror traffic",
    ),
    Case(
        "shadow mirror percent -1",
        _ro(lambda s: s.update(strategy={"shadow": {**SHADOW["shadow"], "mirrorPercent": -1}})),
        "mirrorPercent in body should be greater than or equal to 0",
    ),
    Case(
        "shadow mirror percent 101",
        _ro(lambda s: s.update(strategy={"shadow": {**SHADOW["shadow"], "mirrorPercent": 101}})),
        "mirrorPercent in body should be less than or equal to 100",
    ),
    Case(
        "shadow then canary without steps",
        _ro(lambda s: s.update(strategy={"shadow": {**SHADOW["shadow"], "then": "canary"}})),
        "shadow with then: canary needs steps",
    ),
    Case(
        "shadow then unknown",
        _ro(lambda s: s.update(strategy={"shadow": {**SHADOW["shadow"], "then": "later"}})),
        'Unsupported value: "later"',
    ),
    Case(
        "blue-green preview mirror with service routing",
        _ro(
            lambda s: s.update(
                strategy={"blueGreen": {"previewMirrorPercent": 20}},
                trafficRouting=copy.deepcopy(SERVICE),
            )
        ),
        "blueGreen.previewMirrorPercent needs a router that can mirror traffic",
    ),
    # analysis
    Case(
        "empty query", _ro(_set("analysis.metrics.0.query", "")), "metric query must not be empty"
    ),
    Case(
        "blank query",
        _ro(_set("analysis.metrics.0.query", "   ")),
        "metric query must not be empty",
    ),
    Case(
        "metric without threshold",
        _ro(_set("analysis.metrics.0", {"name": "error-rate", "query": "x"})),
        "metric needs at least one threshold",
    ),
    Case(
        "negative failure limit",
        _ro(_set("analysis.failureLimit", -1)),
        "failureLimit in body should be greater than or equal to 0",
    ),
    Case(
        "negative relative threshold",
        _ro(_set("analysis.metrics.0.maxIncreaseVsStable", -0.1)),
        "maxIncreaseVsStable in body should be greater than or equal to 0",
    ),
    Case(
        "zero interval",
        _ro(_set("analysis.interval", "0s")),
        "analysis.interval must be greater than zero",
    ),
    Case(
        "interval without unit",
        _ro(_set("analysis.interval", "30")),
        "analysis.interval must be a duration",
    ),
    Case(
        "duplicate metric names",
        _ro(_set("analysis.metrics", [metric("a"), metric("a")])),
        "analysis metric names must be unique",
    ),
    Case(
        "distribution metric without a limit",
        _ro(_set("analysis.metrics.0", {"name": "p", "query": "x", "distribution": {}})),
        "distribution needs maxPSI or maxJSDistance",
    ),
    Case(
        "distribution metric with a value threshold",
        _ro(
            _set(
                "analysis.metrics.0",
                {"name": "p", "query": "x", "max": 1, "distribution": {"maxPSI": 0.2}},
            )
        ),
        "a distribution metric takes maxPSI/maxJSDistance, not min, max",
    ),
    Case(
        "JS distance limit above 1",
        _ro(
            _set(
                "analysis.metrics.0",
                {"name": "p", "query": "x", "distribution": {"maxJSDistance": 1.5}},
            )
        ),
        "maxJSDistance in body should be less than or equal to 1",
    ),
    Case(
        "provider and inline address",
        _ro(_set("analysis.address", "http://127.0.0.1:9090")),
        "analysis takes a provider name or an inline address, not both",
    ),
    Case("no metrics", _ro(_set("analysis.metrics", [])), "should have at least 1 items"),
    Case(
        "gate without threshold",
        _ro(_set("gates", {"offlineMetrics": [{"name": "auc"}]})),
        "an offline gate needs at least one of min, max or maxDropVsStable",
    ),
    Case(
        "bake duration in words",
        _ro(_set("bake", {"duration": "10 minutes"})),
        "bake.duration must be a duration",
    ),
]

VALID: list[Case] = [
    Case(
        "a Gateway and the live Service as parents",
        _ro(_parents(_MESH)),
    ),
    Case(
        "a Gateway named like the Rollout and its live Service, no sectionNames",
        _ro(_set("trafficRouting.gatewayAPI.parentRefs", [{"name": "ro"}, _MESH])),
    ),
    Case(
        "DVC lineage of a directory",
        _mv(_set("lineage.data.dvc", {**DVC, "md5": "0" * 32 + ".dir"})),
    ),
    Case("artifact size 20Gi", _mv(_set("artifact.size", "20Gi"))),
    Case("artifact size 1500M", _mv(_set("artifact.size", "1500M"))),
    Case(
        "weights 0 and 100",
        _ro(_set("strategy.canary.steps", [{"setWeight": 0}, {"setWeight": 100}])),
    ),
    Case("pause 1h30m", _ro(_set("strategy.canary.steps.1", {"pause": {"duration": "1h30m"}}))),
    Case(
        "pause 250ms and 1.5h",
        _ro(
            _set(
                "strategy.canary.steps",
                [{"pause": {"duration": "250ms"}}, {"pause": {"duration": "1.5h"}}],
            )
        ),
    ),
    Case("pause without duration", _ro(_set("strategy.canary.steps", [{"pause": {}}]))),
    Case("pre-release and build metadata", _mv(_set("version", "1.3.0-rc.1+build.5"))),
    Case(
        "largest number of steps",
        _ro(_set("strategy.canary.steps", [{"setWeight": i * 3} for i in range(32)])),
    ),
    Case(
        "largest number of metrics",
        _ro(_set("analysis.metrics", [metric(f"m{i}") for i in range(16)])),
    ),
    Case("track latest", _ro(_set("target", {"track": "latest"}))),
    Case("abTest on 10% of users by header id", _ab()),
    Case(
        "abTest on 1% of users by cookie id, until 336h, report only",
        _ab(
            users={"percentOfUsers": {"percent": 1, "userId": {"cookie": "session.uid"}}},
            duration="336h",
            onCandidateWins="report",
        ),
    ),
    Case(
        "abTest counting requests clustered within users (delta method)",
        _ab(objective={**AB_OBJECTIVE, "unit": "requests", "deltaMethod": AB_DELTA}),
    ),
    Case(
        "abTest beta testers by header", _ab(users={"header": {"name": "x-beta", "value": "yes"}})
    ),
    Case(
        "abTest beta testers by cookie, over istio",
        _ab(users={"cookie": {"name": "beta", "value": "a/b=c"}}, routing=ISTIO),
    ),
    Case("a shared HTTPRoute's named rules", _ro(_set("trafficRouting", SHARED_ROUTE))),
    Case(
        "a shared VirtualService's named routes",
        _ro(_set("trafficRouting", {"istio": {"virtualService": {"name": "vs", "routes": ["r"]}}})),
    ),
    Case(
        "track latest with pre-releases",
        _ro(_set("target", {"track": "latest", "includePrereleases": True})),
    ),
    Case(
        "shadow over istio mirroring 100%",
        _ro(
            lambda s: s.update(
                strategy={"shadow": {**SHADOW["shadow"], "mirrorPercent": 100}},
                trafficRouting=copy.deepcopy(ISTIO),
            )
        ),
    ),
    Case(
        "shadow then canary with steps",
        _ro(
            lambda s: s.update(
                strategy={
                    "shadow": {**SHADOW["shadow"], "then": "canary", "steps": [{"setWeight": 50}]}
                }
            )
        ),
    ),
    Case(
        "blue-green over service without mirroring",
        _ro(
            lambda s: s.update(
                strategy={"blueGreen": {"previewMirrorPercent": 0}},
                trafficRouting=copy.deepcopy(SERVICE),
            )
        ),
    ),
    Case(
        "blue-green over istio mirroring 100%, immediate auto-promotion",
        _ro(
            lambda s: s.update(
                strategy={"blueGreen": {"previewMirrorPercent": 100, "autoPromotionSeconds": 0}},
                trafficRouting=copy.deepcopy(ISTIO),
            )
        ),
    ),
    Case("zero replicas", _ro(_set("replicas", 0))),
    Case(
        "gate with only a relative threshold",
        _ro(_set("gates", {"offlineMetrics": [{"name": "auc", "maxDropVsStable": 0.005}]})),
    ),
    Case(
        "inline address without provider",
        _ro(
            lambda s: (
                s["analysis"].pop("provider")
                and s["analysis"].update(address="http://127.0.0.1:9090")
            )
        ),
    ),
    Case(
        "zero limits and a relative-only metric",
        _ro(
            lambda s: s["analysis"].update(
                failureLimit=0,
                inconclusiveLimit=0,
                consecutiveErrorLimit=0,
                metrics=[{"name": "p99", "query": "x", "maxIncreaseVsStable": 0.2}],
            )
        ),
    ),
    Case("every serving field", _mv(lambda s: s["serving"].update(FULL_SERVING))),
    Case(
        "names and keys at the edge of what a pod takes",
        _mv(lambda s: s["serving"].update(EDGE_ENV)),
    ),
    Case(
        "a port named http with serving.port unset",
        _mv(_set("serving.ports", [{"name": "http", "containerPort": 8080}])),
    ),
    Case(
        "extra port with serving.port moved",
        _mv(
            lambda s: s["serving"].update(
                port=9090, ports=[{"name": "metrics", "containerPort": 8080}]
            )
        ),
    ),
    Case(
        "prediction-distribution metric",
        _ro(
            _set(
                "analysis.metrics.0",
                {
                    "name": "predictions",
                    "query": 'sum by (le) (increase(model_prediction_bucket{version="{{version}}"}'
                    "[{{interval}}]))",
                    "distribution": {"maxPSI": 0.2, "maxJSDistance": 0.1, "minCount": 500},
                },
            )
        ),
    ),
    Case("minimal model version", model_version(version="0.0.1")),
    Case("model version name of 63 characters", model_version(name="m" * 63)),
    Case("rollout name of the longest length", rollout(name="r" * ROLLOUT_NAME_MAX)),
]
