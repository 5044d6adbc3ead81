"""The parts of a ModelVersion's ``serving`` spec that real model servers need.

Triton, vLLM, TorchServe, TF Serving, MLServer and KServe's model servers listen on more
than one port (HTTP, gRPC, metrics), need probes that wait minutes for a model to load,
shared memory (``/dev/shm``) and configuration files, run as their image's own user, and
read credentials from Secrets. These classes say so in the ModelVersion, each field
bounded and checked by the CRD schema (types, ranges, CEL rules with messages that name
the problem), in the shapes of core/v1 so the builders (``plan/serving.py``) copy them
into the pod unchanged.

What is refused, and why (docs/serving-runtimes.md):

- mounts over the model directory ``MODEL_DIR`` (``/mnt/models``, where the storage
  initializer puts the verified artifact): nothing may shadow what was verified;
- ``hostPath`` volumes: a model version must not mount the node;
- ``privileged``, ``allowPrivilegeEscalation: true``, ``runAsNonRoot: false``, user 0
  and any added capability but ``NET_BIND_SERVICE``: every container stays within the
  restricted Pod Security Standard
  (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field

from ferryman.api.common import ApiModel, cel, matches, model_rules, rules

# The storage initializer's model directory (plan/initializer.py's MODEL_DIR; the API layer
# may not import the plan, so a unit test holds the two equal).
MODEL_DIR = "/mnt/models"
# The pod volume that holds it (plan/initializer.py's MODEL_VOLUME), and the one that
# mounts a PersistentVolumeClaim store (its CLAIM_VOLUME): pod volume names are unique.
MODEL_VOLUME = "model-store"
CLAIM_VOLUME = "model-claim"
# The name of the primary port: the route's Services and the default probe target it.
PRIMARY_PORT = "http"
DEFAULT_PORT = 8080

MAX_PORTS = 8
MAX_VOLUMES = 16
MAX_ENV_FROM = 16

# IANA service name (core/v1 ContainerPort.name): at most 15 characters, lowercase letters,
# digits and '-', at least one letter, no '-' at either end nor two in a row.
PORT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# core/v1 appProtocol: an IANA service name, or a domain-prefixed name such as
# kubernetes.io/h2c (https://kubernetes.io/docs/concepts/services-networking/service/#application-protocol).
APP_PROTOCOL = (
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
PRIMARY_APP_PROTOCOLS = ("http", "kubernetes.io/h2c")
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A quantity as resource.Quantity writes one (e.g. 1Gi, 512Mi, 2G).
QUANTITY = r"^[0-9]{1,12}(\.[0-9]{1,6})?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"
# An absolute path of non-empty segments, none of them '.' or '..'.
ABSOLUTE_PATH = r"^(/[^/]+)+$"
DOT_SEGMENT = r"(^|/)\.\.?(/|$)"

PortName = Annotated[str, Field(max_length=15)]


def _port_name_rules(what: str) -> dict[str, Any]:
    return rules(
        cel(
            matches(PORT_NAME) + " && self.matches('[a-z]') && !self.contains('--')",
            f"{what} must be an IANA service name: at most 15 lowercase letters, digits "
            "and '-', with at least one letter, e.g. http, grpc, metrics",
        )
    )


def name_rule(pattern: str, what: str) -> dict[str, Any]:
    return rules(cel(matches(pattern), what))


class Protocol(StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class ServingPort(ApiModel):
    """A named port of the model server: its container port, and a port of the
    version's Service with the same number, name, protocol and ``appProtocol``."""

    name: str = Field(
        max_length=15,
        description="IANA service name, unique in the version. 'http' names the primary "
        "HTTP port (the route's and the default probe's); without an entry named http, "
        "serving.port is the primary port.",
        json_schema_extra=_port_name_rules("serving.ports[].name"),
    )
    container_port: int = Field(ge=1, le=65535, description="Port number in the container.")
    protocol: Protocol = Field(Protocol.TCP, description="TCP (default), UDP or SCTP.")
    app_protocol: str | None = Field(
        None,
        max_length=128,
        description="Application protocol for Service consumers (meshes, gateways): an "
        "IANA name such as http or grpc, or a prefixed one such as kubernetes.io/h2c.",
        json_schema_extra=rules(
            cel(
                matches(APP_PROTOCOL),
                "appProtocol must be an IANA service name (http, grpc) or a "
                "domain-prefixed name such as kubernetes.io/h2c",
            )
        ),
    )


class ProbePort(ApiModel):
    """A probe's target port, by name."""

    port: PortName | None = Field(
        None,
        description="Name of the port to probe: 'http' (the primary port, the default) or "
        "the name of one of serving.ports.",
    )


class HTTPGet(ProbePort):
    """An HTTP GET probe: Ready while the path answers 200-399."""

    path: str = Field(
        "/",
        max_length=1024,
        description="Path to request, e.g. /v2/health/ready.",
        json_schema_extra=rules(cel("self.startsWith('/')", "httpGet.path must start with '/'")),
    )
    scheme: Literal["HTTP", "HTTPS"] | None = Field(None, description="HTTP (default) or HTTPS.")


class GRPCProbe(ProbePort):
    """A gRPC health check (grpc.health.v1.Health/Check) on the named port."""

    service: str | None = Field(
        None, max_length=256, description="The service name sent in the health check request."
    )


class Probe(ApiModel):
    """One probe: exactly one of httpGet, grpc or tcpSocket, with its timings."""

    model_config = model_rules(
        cel(
            "[has(self.httpGet), has(self.grpc), has(self.tcpSocket)].exists_one(x, x)",
            "a probe needs exactly one of httpGet, grpc or tcpSocket",
        )
    )

    http_get: HTTPGet | None = Field(None, description="HTTP GET on a path of a named port.")
    grpc: GRPCProbe | None = Field(None, description="gRPC health check on a named port.")
    tcp_socket: ProbePort | None = Field(None, description="TCP connect to a named port.")
    initial_delay_seconds: int | None = Field(
        None, ge=0, le=3600, description="Seconds after start before the first probe."
    )
    period_seconds: int | None = Field(
        None, ge=1, le=3600, description="Seconds between probes (default 10; readiness 5)."
    )
    timeout_seconds: int | None = Field(
        None, ge=1, le=3600, description="Seconds a probe may take (default 1)."
    )
    success_threshold: int | None = Field(
        None,
        ge=1,
        le=100,
        description="Successes in a row to pass (default 1; must be 1 for liveness and startup).",
    )
    failure_threshold: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Failures in a row to fail (default 3). A startup probe allows "
        "failureThreshold x periodSeconds for the model to load.",
    )


class EmptyDir(ApiModel):
    """A scratch directory for the pod's lifetime."""

    model_config = model_rules(
        cel(
            "!has(self.medium) || self.medium != 'Memory' || has(self.sizeLimit)",
            "an emptyDir with medium Memory needs a sizeLimit (it is RAM, counted against "
            "the pod's memory)",
        )
    )

    medium: Literal["", "Memory"] | None = Field(
        None, description="'' (node disk, default) or Memory (tmpfs, e.g. for /dev/shm)."
    )
    size_limit: str | None = Field(
        None,
        max_length=64,
        description="Quantity, e.g. 1Gi.",
        json_schema_extra=rules(
            cel(matches(QUANTITY), "emptyDir.sizeLimit must be a quantity such as 512Mi or 2Gi")
        ),
    )


class ConfigMapVolume(ApiModel):
    """Files from a ConfigMap of the namespace."""

    name: str = Field(
        max_length=253,
        description="The ConfigMap's name.",
        json_schema_extra=name_rule(DNS_SUBDOMAIN, "configMap.name must be a DNS subdomain"),
    )
    optional: bool | None = Field(None, description="Start without it when it is missing.")


class SecretVolume(ApiModel):
    """Files from a Secret of the namespace."""

    secret_name: str = Field(
        max_length=253,
        description="The Secret's name.",
        json_schema_extra=name_rule(DNS_SUBDOMAIN, "secret.secretName must be a DNS subdomain"),
    )
    optional: bool | None = Field(None, description="Start without it when it is missing.")


HOST_PATH_MESSAGE = (
    "hostPath volumes are not allowed: a model version must not mount the node; use "
    "emptyDir, configMap or secret"
)


class Volume(ApiModel):
    """A pod volume: exactly one of emptyDir, configMap or secret."""

    model_config = model_rules(
        cel("!has(self.hostPath)", HOST_PATH_MESSAGE),
        cel(
            "[has(self.emptyDir), has(self.configMap), has(self.secret)].exists_one(x, x)",
            "a volume needs exactly one of emptyDir, configMap or secret",
        ),
    )

    name: str = Field(
        max_length=63,
        description=f"DNS-1123 label, unique in the version; not {MODEL_VOLUME} nor "
        f"{CLAIM_VOLUME} (the model's).",
        json_schema_extra=rules(
            cel(matches(DNS_LABEL), "volumes[].name must be a DNS-1123 label"),
            cel(
                f"self != '{MODEL_VOLUME}' && self != '{CLAIM_VOLUME}'",
                f"the volume names {MODEL_VOLUME} and {CLAIM_VOLUME} are the model directory's",
            ),
        ),
    )
    empty_dir: EmptyDir | None = Field(None, description="A scratch directory.")
    config_map: ConfigMapVolume | None = Field(None, description="Files from a ConfigMap.")
    secret: SecretVolume | None = Field(None, description="Files from a Secret.")
    host_path: dict[str, Any] | None = Field(
        None, description="Refused: a model version must not mount the node."
    )


class VolumeMount(ApiModel):
    """Where one of serving.volumes appears in the model server's container."""

    name: str = Field(max_length=63, description="Name of one of serving.volumes.")
    mount_path: str = Field(
        max_length=1024,
        description=f"Absolute path; not {MODEL_DIR} nor under it (the verified model).",
        json_schema_extra=rules(
            cel(
                f"{matches(ABSOLUTE_PATH)} && !{matches(DOT_SEGMENT)}",
                "mountPath must be an absolute path without '.' or '..' segments",
            ),
            cel(
                f"self != '{MODEL_DIR}' && !self.startsWith('{MODEL_DIR}/')",
                f"mountPath must not be {MODEL_DIR} or under it: the storage initializer puts "
                "the verified model there",
            ),
        ),
    )
    read_only: bool | None = Field(None, description="Mount read-only.")
    sub_path: str | None = Field(
        None,
        max_length=1024,
        description="A relative path inside the volume to mount instead of its root.",
        json_schema_extra=rules(
            cel(
                f"!self.startsWith('/') && !{matches(DOT_SEGMENT)}",
                "subPath must be a relative path without '.' or '..' segments",
            )
        ),
    )


class Capabilities(ApiModel):
    """Linux capabilities added back after ferryman drops ALL."""

    add: list[Literal["NET_BIND_SERVICE"]] | None = Field(
        None,
        max_length=1,
        description="Only NET_BIND_SERVICE (bind ports below 1024): the one capability the "
        "restricted Pod Security Standard allows.",
    )


class SecurityContext(ApiModel):
    """Overrides of ferryman's restricted security context, within its limits."""

    run_as_user: int | None = Field(
        None, ge=1, le=2147483647, description="The UID (never 0; default 65532)."
    )
    run_as_group: int | None = Field(
        None, ge=0, le=2147483647, description="The primary GID (default 65532)."
    )
    fs_group: int | None = Field(
        None, ge=0, le=2147483647, description="The GID owning volumes (default 65532)."
    )
    read_only_root_filesystem: bool | None = Field(
        None, description="Mount the image read-only (default false)."
    )
    capabilities: Capabilities | None = Field(None, description="Capabilities to add.")
    run_as_non_root: bool | None = Field(
        None,
        description="Must be true when given.",
        json_schema_extra=rules(cel("self", "securityContext.runAsNonRoot must be true")),
    )
    privileged: bool | None = Field(
        None,
        description="Refused when true.",
        json_schema_extra=rules(
            cel(
                "!self",
                "securityContext.privileged is not allowed: model servers never run privileged",
            )
        ),
    )
    allow_privilege_escalation: bool | None = Field(
        None,
        description="Refused when true.",
        json_schema_extra=rules(
            cel("!self", "securityContext.allowPrivilegeEscalation is not allowed")
        ),
    )


def _protocol(port: str) -> str:
    # The CRD has no defaults (crds.py drops them): an absent protocol is TCP.
    return f"(has({port}.protocol) ? {port}.protocol : 'TCP')"


def _has_primary() -> str:
    return f"(has(self.ports) && self.ports.exists(p, p.name == '{PRIMARY_PORT}'))"


def _port_known(expr: str) -> str:
    return (
        f"({expr} == '{PRIMARY_PORT}' && !{_has_primary()}) || "
        f"(has(self.ports) && self.ports.exists(p, p.name == {expr}))"
    )


def _probe_ports_rule(probe: str) -> dict[str, str]:
    checks = [
        f"(!has(self.{probe}.{handler}) || !has(self.{probe}.{handler}.port) || "
        f"{_port_known(f'self.{probe}.{handler}.port')})"
        for handler in ("httpGet", "grpc", "tcpSocket")
    ]
    return cel(
        f"!has(self.{probe}) || (" + " && ".join(checks) + ")",
        f"{probe} must name a port of the version: 'http' (serving.port) or one of serving.ports",
    )


def serving_rules() -> tuple[dict[str, str], ...]:
    """The CEL rules of ``serving`` that relate its fields (ports, probes, env, mounts)."""
    default_port = f"(has(self.port) ? self.port : {DEFAULT_PORT})"
    return (
        cel(
            "!has(self.ports) || self.ports.all(p, self.ports.exists_one(q, q.name == p.name))",
            "serving.ports names must be unique",
        ),
        cel(
            "!has(self.ports) || self.ports.all(p, "
            "self.ports.exists_one(q, q.containerPort == p.containerPort && "
            f"{_protocol('q')} == {_protocol('p')}))",
            "serving.ports must not repeat a containerPort and protocol",
        ),
        cel(
            f"!(has(self.port) && {_has_primary()})",
            f"give the primary port once: serving.port or a serving.ports entry named "
            f"{PRIMARY_PORT}, not both",
        ),
        cel(
            f"{_has_primary()} || !has(self.ports) || "
            f"self.ports.all(p, p.containerPort != {default_port})",
            "serving.ports must not repeat serving.port (the primary http port, default 8080)",
        ),
        cel(
            f"!has(self.ports) || self.ports.all(p, p.name != '{PRIMARY_PORT}' || "
            f"({_protocol('p')} == 'TCP' && (!has(p.appProtocol) || "
            + " || ".join(f"p.appProtocol == '{a}'" for a in PRIMARY_APP_PROTOCOLS)
            + ")))",
            "the primary port (named http) serves HTTP: protocol TCP and appProtocol "
            + " or ".join(PRIMARY_APP_PROTOCOLS),
        ),
        _probe_ports_rule("startupProbe"),
        _probe_ports_rule("livenessProbe"),
        _probe_ports_rule("readinessProbe"),
        cel(
            "!(has(self.readinessPath) && has(self.readinessProbe))",
            "readinessPath is the short form of readinessProbe: give one, not both",
        ),
        cel(
            "(!has(self.livenessProbe) || !has(self.livenessProbe.successThreshold) || "
            "self.livenessProbe.successThreshold == 1) && (!has(self.startupProbe) || "
            "!has(self.startupProbe.successThreshold) || self.startupProbe.successThreshold == 1)",
            "livenessProbe and startupProbe need successThreshold 1",
        ),
        cel(
            "!has(self.env) || self.env.all(e, self.env.exists_one(f, f.name == e.name))",
            "serving.env names must be unique",
        ),
        cel(
            "!has(self.volumes) || "
            "self.volumes.all(v, self.volumes.exists_one(w, w.name == v.name))",
            "serving.volumes names must be unique",
        ),
        cel(
            "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
            "self.volumes.exists(v, v.name == m.name))",
            "every serving.volumeMounts entry must name one of serving.volumes",
        ),
        cel(
            "!has(self.volumeMounts) || self.volumeMounts.all(m, "
            "self.volumeMounts.exists_one(n, n.mountPath == m.mountPath))",
            "serving.volumeMounts paths must be unique",
        ),
    )
