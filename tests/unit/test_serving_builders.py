"""The pure builders of one served version's Deployment, Service and PDB."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cases import serving_runtimes
from cases.api_cases import model_version, rollout
from ferryman.api import serving as api_serving
from ferryman.api import serving_env as api_env
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import initializer, labels, pod_security, serving
from ferryman.plan.route import Route
from ferryman.routing.service import ServiceRouter
from unit.test_routers import update_golden

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def mv(**spec: Any) -> ModelVersion:
    m = model_version(name="fraud-1-3-0-rc-1", version="1.3.0-rc.1+build.5")
    m["metadata"]["namespace"] = "risk"
    m["spec"].update(spec)
    return ModelVersion.model_validate(m)


def ro(**spec: Any) -> Rollout:
    r = rollout(name="fraud")
    r["metadata"].update(namespace="risk", uid="0f2d-uid")
    r["spec"].update(spec)
    return Rollout.model_validate(r)


def test_labels_are_sanitized_and_lineage_goes_to_annotations() -> None:
    version = mv(lineage={"dataVersion": "transactions 2026/10", "codeCommit": "a1b2c3d"})
    d = serving.deployment(version, ro(), replicas=3)
    assert d["metadata"]["labels"] == {
        labels.MODEL: "fraud",
        labels.VERSION: "1.3.0-rc.1_build.5",
        labels.ROLLOUT: "fraud",
        labels.MANAGED_BY: "ferryman",
    }
    annotations = d["metadata"]["annotations"]
    assert annotations["ferryman.dev/data-version"] == "transactions 2026/10"
    assert annotations["ferryman.dev/code-commit"] == "a1b2c3d"
    assert annotations["ferryman.dev/artifact-digest"] == version.spec.artifact.digest
    assert annotations["ferryman.dev/version"] == "1.3.0-rc.1+build.5"


def test_selectors_match_pod_labels_and_service_targets_the_named_port() -> None:
    version, rollout_ = mv(), ro()
    d = serving.deployment(version, rollout_, replicas=2)
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    selector = d["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    svc = serving.service(version, rollout_)
    assert svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    pdb = serving.pod_disruption_budget(version, rollout_)
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    for obj in (d, svc, pdb):
        assert obj["metadata"]["name"] == "fraud-1-3-0-rc-1"
        assert obj["metadata"]["namespace"] == "risk"
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "ferryman.dev/v1alpha1",
                "kind": "Rollout",
                "name": "fraud",
                "uid": "0f2d-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert labels.is_owned_by(obj, rollout_)


def test_artifact_env_probe_and_non_root() -> None:
    version = mv(
        serving={
            "image": "srv:1",
            "port": 9000,
            "readinessPath": "/healthz",
            "env": [{"name": "WORKERS", "value": "2"}],
            "args": ["--x"],
        }
    )
    pod = serving.deployment(version, ro(), replicas=1)["spec"]["template"]["spec"]
    server = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["MODEL_URI"] == version.spec.artifact.uri
    assert env["MODEL_DIGEST"] == version.spec.artifact.digest
    assert env["WORKERS"] == "2"
    assert "MODEL_DIR" not in env and "initContainers" not in pod
    assert server["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert server["args"] == ["--x"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["allowPrivilegeEscalation"] is False


def test_storage_initializer_downloads_into_an_emptydir_with_the_secret() -> None:
    rollout_ = ro(storage={"secretName": "model-store"})
    pod = serving.deployment(mv(), rollout_, replicas=1, init_image="ferryman:0.1")["spec"][
        "template"
    ]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == "ferryman:0.1"
    assert init["command"] == ["python", "-m", "ferryman.storage_init"]
    assert f"--digest={mv().spec.artifact.digest}" in init["args"]
    assert init["envFrom"] == [{"secretRef": {"name": "model-store"}}]
    assert pod["volumes"] == [{"name": "model-store", "emptyDir": {}}]
    server = pod["containers"][0]
    assert server["volumeMounts"][0]["readOnly"] is True
    assert {"name": "MODEL_DIR", "value": "/mnt/models"} in server["env"]


def test_placement_from_the_rollout_template() -> None:
    template = {
        "nodeSelector": {"gpu": "a100"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"x": 1}},
        "serviceAccountName": "model-sa",
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "serving",
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "podAnnotations": {"prometheus.io/scrape": "true"},
    }
    version = mv(serving={"image": "srv:1", "resources": {"requests": {"cpu": "1"}}})
    d = serving.deployment(version, ro(template=template), replicas=1)
    pod = d["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == template["tolerations"]
    assert pod["affinity"] == template["affinity"]
    assert pod["serviceAccountName"] == "model-sa"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "serving"
    # The Rollout's resources override the ModelVersion's.
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    annotations = d["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


def test_builders_do_not_share_state_with_their_inputs() -> None:
    version = mv(serving={"image": "srv:1", "env": [{"name": "A", "value": "1"}]})
    d = serving.deployment(version, ro(), replicas=1)
    d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "changed"
    assert version.spec.serving.env is not None
    assert version.spec.serving.env[0].value == "1"


def test_foreign_objects_are_not_ours() -> None:
    rollout_ = ro()
    assert not labels.is_owned_by({"metadata": {}}, rollout_)
    other = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "ferryman.dev/v1alpha1", "kind": "Rollout", "uid": "someone-else"}
            ]
        }
    }
    assert not labels.is_owned_by(other, rollout_)


@given(st.text(max_size=300))
def test_label_value_is_always_a_valid_label(text: str) -> None:
    assert LABEL_VALUE.match(labels.label_value(text))
    assert len(labels.label_value(text)) <= 63


def _old_label_value(text: str) -> str:
    """The label values ferryman wrote before hashing: kept byte-identical where they fit."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:63].strip("._-")


FIELD_CASE_09 = "1.0.0-rc." + "x" * 60


def test_long_versions_that_share_63_characters_get_distinct_labels() -> None:
    a, b = FIELD_CASE_09 + ".1", FIELD_CASE_09 + ".2"
    assert a[:63] == b[:63]
    assert labels.label_value(a) != labels.label_value(b)
    for v in (a, b):
        value = labels.label_value(v)
        assert LABEL_VALUE.match(value) and len(value) <= 63
        assert value.startswith(v[:40])  # still readable


@given(st.text(max_size=200), st.text(max_size=200))
def test_distinct_texts_never_share_a_label_value(a: str, b: str) -> None:
    if a != b:
        assert labels.label_value(a) != labels.label_value(b)


_SEMVER_CHARS = st.sampled_from("0123456789abcxyzXY.-+")


@given(st.text(_SEMVER_CHARS, min_size=50, max_size=90), st.data())
def test_texts_sharing_a_long_prefix_never_share_a_label_value(
    prefix: str, data: st.DataObject
) -> None:
    a = prefix + data.draw(st.text(_SEMVER_CHARS, max_size=20))
    b = prefix + data.draw(st.text(_SEMVER_CHARS, max_size=20))
    if a != b:
        assert labels.label_value(a) != labels.label_value(b)
    for t in (a, b):
        assert LABEL_VALUE.match(labels.label_value(t)) and len(labels.label_value(t)) <= 63


# Model names (DNS-1123 labels), Rollout names and semantic versions up to 63 characters:
# every value ferryman wrote before keeps its exact bytes (Deployment selectors are
# immutable).
_FITTING = st.from_regex(r"\A[0-9A-Za-z]([0-9A-Za-z.+-]{0,61}[0-9A-Za-z])?\Z")


@given(_FITTING)
def test_values_that_fit_keep_their_exact_bytes(text: str) -> None:
    assert labels.label_value(text) == _old_label_value(text)


def test_short_values_unchanged() -> None:
    for text, value in [
        ("1.3.0", "1.3.0"),
        ("1.3.0-rc.1+build.5", "1.3.0-rc.1_build.5"),
        ("fraud-detector", "fraud-detector"),
        ("a" * 63, "a" * 63),
        ("", ""),
    ]:
        assert labels.label_value(text) == value


def test_every_selector_of_a_version_uses_the_same_label_values() -> None:
    long = model_version(name="fraud-a", version=FIELD_CASE_09 + ".1")
    long["metadata"]["namespace"] = "risk"
    version = ModelVersion.model_validate(long)
    rollout_ = ro()
    dep = serving.deployment(version, rollout_, replicas=1)
    svc = serving.service(version, rollout_)
    pdb = serving.pod_disruption_budget(version, rollout_)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for selector in (
        dep["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert pod_labels[labels.VERSION] == labels.label_value(FIELD_CASE_09 + ".1")


def test_the_live_service_selects_a_long_version_by_its_pods_labels() -> None:
    """Plain-Service routing builds its selector with the same label values as the pods."""
    a, b = FIELD_CASE_09 + ".1", FIELD_CASE_09 + ".2"
    rollout_ = ro()
    pods = {}
    for name, version in (("fraud-a", a), ("fraud-b", b)):
        m = model_version(name=name, version=version)
        m["metadata"]["namespace"] = "risk"
        dep = serving.deployment(ModelVersion.model_validate(m), rollout_, replicas=1)
        pods[version] = dep["spec"]["template"]["metadata"]["labels"]
    router = ServiceRouter(model="fraud")
    for stable, other in ((a, b), (b, a)):
        svc = router.build(
            name="fraud",
            namespace="risk",
            route=Route(stable=stable),
            services={a: "fraud-a", b: "fraud-b"},
            port=80,
            metadata={},
        )
        selector = svc["spec"]["selector"]
        assert selector.items() <= pods[stable].items()
        assert not selector.items() <= pods[other].items()


# --- Model servers: ports, probes, volumes, security, env (issue 14 §2) -------------------


def runtime_mv(**serving_: Any) -> ModelVersion:
    return mv(serving={"image": "srv:1", **serving_})


def server(d: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = d["spec"]["template"]["spec"]["containers"][0]
    return container


APP = {name: {"appProtocol": name} for name in ("http", "grpc")}
TRITON_PORTS = [
    {"name": "http", "containerPort": 8000, "appProtocol": "http"},
    {"name": "grpc", "containerPort": 8001, "appProtocol": "grpc"},
    {"name": "metrics", "containerPort": 8002},
    {"name": "stats", "containerPort": 8125, "protocol": "UDP"},
]


def test_every_port_reaches_the_container_and_the_service_with_name_and_app_protocol() -> None:
    version = runtime_mv(ports=TRITON_PORTS)
    assert server(serving.deployment(version, ro(), replicas=1))["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8002, "protocol": "TCP"},
        {"name": "stats", "containerPort": 8125, "protocol": "UDP"},
    ]
    # The primary port keeps the Rollout's service port (80): routes point at it.
    assert serving.service(version, ro())["spec"]["ports"] == [
        {
            "name": "http",
            "port": 80,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
        {
            "name": "grpc",
            "port": 8001,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {"name": "metrics", "port": 8002, "targetPort": "metrics", "protocol": "TCP"},
        {"name": "stats", "port": 8125, "targetPort": "stats", "protocol": "UDP"},
    ]
    assert serving.primary_port(version.spec.serving) == 8000


def test_serving_port_alone_renders_as_before() -> None:
    version = runtime_mv(port=9000)
    assert server(serving.deployment(version, ro(), replicas=1))["ports"] == [
        {"name": "http", "containerPort": 9000, "protocol": "TCP"}
    ]
    assert serving.service(version, ro())["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    # Extra ports beside serving.port: the primary keeps serving.port's number.
    extra = runtime_mv(port=9000, ports=[{"name": "grpc", "containerPort": 9001}])
    ports = server(serving.deployment(extra, ro(), replicas=1))["ports"]
    assert [p["containerPort"] for p in ports] == [9000, 9001]


def test_probes_render_each_handler_and_resolve_grpc_port_names_to_numbers() -> None:
    version = runtime_mv(
        ports=TRITON_PORTS,
        startupProbe={
            "httpGet": {"path": "/v2/health/ready"},
            "periodSeconds": 10,
            "failureThreshold": 60,
        },
        livenessProbe={"grpc": {"port": "grpc", "service": "inference"}, "timeoutSeconds": 3},
        readinessProbe={"tcpSocket": {"port": "metrics"}, "initialDelaySeconds": 2},
    )
    c = server(serving.deployment(version, ro(), replicas=1))
    assert c["startupProbe"] == {
        "httpGet": {"port": "http", "path": "/v2/health/ready"},
        "periodSeconds": 10,
        "failureThreshold": 60,
    }
    assert c["livenessProbe"] == {
        "grpc": {"port": 8001, "service": "inference"},
        "timeoutSeconds": 3,
    }
    # ferryman's readiness timings stay where the ModelVersion gives none.
    assert c["readinessProbe"] == {
        "tcpSocket": {"port": "metrics"},
        "periodSeconds": 5,
        "failureThreshold": 3,
        "initialDelaySeconds": 2,
    }


def test_readiness_path_stays_the_short_form_and_no_other_probe_by_default() -> None:
    c = server(serving.deployment(runtime_mv(readinessPath="/healthz"), ro(), replicas=1))
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    assert "livenessProbe" not in c and "startupProbe" not in c


def test_grpc_probe_on_the_primary_port_gets_its_number() -> None:
    version = runtime_mv(port=9000, livenessProbe={"grpc": {}})
    probe = server(serving.deployment(version, ro(), replicas=1))["livenessProbe"]
    assert probe == {"grpc": {"port": 9000}}


SHM = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}


def test_volumes_follow_the_model_store_and_mounts_follow_its_mount() -> None:
    version = runtime_mv(
        volumes=[SHM, {"name": "cfg", "configMap": {"name": "server-config"}}],
        volumeMounts=[
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "cfg", "mountPath": "/etc/server", "readOnly": True},
        ],
    )
    d = serving.deployment(version, ro(), replicas=1, init_image="init:1")
    pod = d["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": initializer.MODEL_VOLUME, "emptyDir": {}},
        SHM,
        {"name": "cfg", "configMap": {"name": "server-config"}},
    ]
    assert server(d)["volumeMounts"] == [
        {"name": initializer.MODEL_VOLUME, "mountPath": initializer.MODEL_DIR, "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "cfg", "mountPath": "/etc/server", "readOnly": True},
    ]
    # Without the initializer only the version's own volumes.
    bare = serving.deployment(version, ro(), replicas=1)
    assert [v["name"] for v in bare["spec"]["template"]["spec"]["volumes"]] == ["shm", "cfg"]
    assert "volumeMounts" not in server(serving.deployment(runtime_mv(), ro(), replicas=1))


def test_a_host_path_never_reaches_the_pod() -> None:
    # The CRD refuses it (tests/cases/api_cases.py); the builder drops it all the same.
    version = runtime_mv(volumes=[{"name": "node", "hostPath": {"path": "/"}, "emptyDir": {}}])
    volumes = serving.deployment(version, ro(), replicas=1)["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "node", "emptyDir": {}}]


def test_the_api_refuses_mounts_where_the_initializer_puts_the_model() -> None:
    # The API layer may not import the plan: its copies of the two names must match.
    assert api_serving.MODEL_DIR == initializer.MODEL_DIR
    assert api_serving.MODEL_VOLUME == initializer.MODEL_VOLUME
    assert api_serving.CLAIM_VOLUME == initializer.CLAIM_VOLUME


def test_the_api_refuses_the_env_names_ferryman_sets() -> None:
    # A repeated name makes server-side apply refuse the Deployment (env is a list map
    # keyed by name): the CRD refuses these names (api/serving_env.py), so they must be
    # every name the builder adds, with a storage initializer or without.
    pod = serving.deployment(mv(), ro(), replicas=1, init_image="ferryman:0.1")
    assert [e["name"] for e in server(pod)["env"]] == list(api_env.RESERVED_ENV)


def test_security_context_overrides_stay_within_the_restricted_standard() -> None:
    version = runtime_mv(
        securityContext={
            "runAsUser": 1000,
            "runAsGroup": 0,
            "fsGroup": 2000,
            "readOnlyRootFilesystem": True,
            "capabilities": {"add": ["NET_BIND_SERVICE"]},
        }
    )
    d = serving.deployment(version, ro(), replicas=1, init_image="init:1")
    pod = d["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 0,
        "fsGroup": 2000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert server(d)["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The initializer keeps ferryman's own container settings.
    assert pod["initContainers"][0]["securityContext"] == pod_security.container()
    default = serving.deployment(runtime_mv(), ro(), replicas=1)["spec"]["template"]["spec"]
    assert default["securityContext"]["runAsUser"] == serving.NON_ROOT_UID
    assert server({"spec": {"template": {"spec": default}}})["securityContext"] == (
        pod_security.container()
    )


def test_env_from_secrets_and_config_maps_reaches_the_container() -> None:
    version = runtime_mv(
        env=[
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        ],
        envFrom=[{"secretRef": {"name": "s3"}}, {"prefix": "X_", "configMapRef": {"name": "c"}}],
    )
    c = server(serving.deployment(version, ro(), replicas=1))
    assert c["env"][:2] == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
    ]
    assert c["envFrom"] == [
        {"secretRef": {"name": "s3"}},
        {"prefix": "X_", "configMapRef": {"name": "c"}},
    ]
    assert "envFrom" not in server(serving.deployment(runtime_mv(), ro(), replicas=1))


# --- The runtime examples: golden files ------------------------------------------------

REGENERATE = "FERRYMAN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_serving_builders.py"


def test_there_is_an_example_for_each_runtime_of_the_issue() -> None:
    assert serving_runtimes.RUNTIMES == (
        "kserve-sklearn",
        "mlserver",
        "tf-serving",
        "torchserve",
        "triton",
        "vllm",
    )


@pytest.mark.parametrize("runtime", serving_runtimes.RUNTIMES)
def test_runtime_example_renders_its_golden_deployment_and_service(runtime: str) -> None:
    path = serving_runtimes.GOLDEN / f"{runtime}.yaml"
    got = serving_runtimes.rendered(runtime)
    if update_golden():
        path.write_text(yaml.safe_dump_all(got, sort_keys=False))
    assert path.exists(), f"no golden file {path}: run {REGENERATE}"
    assert got == list(yaml.safe_load_all(path.read_text())), f"regenerate: {REGENERATE}"


@pytest.mark.parametrize("runtime", serving_runtimes.RUNTIMES)
def test_runtime_example_pod_is_within_the_restricted_standard(runtime: str) -> None:
    deployment, svc = serving_runtimes.rendered(runtime)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    for c in pod["containers"] + pod.get("initContainers", []):
        context = c["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert "privileged" not in context
        assert context["capabilities"]["drop"] == ["ALL"]
        assert set(context["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
    assert all("hostPath" not in v for v in pod.get("volumes", []))
    assert all(
        not m["mountPath"].startswith(initializer.MODEL_DIR) or m["name"] == "model-store"
        for c in pod["containers"]
        for m in c.get("volumeMounts", [])
    )
    # Every port of the Service carries an appProtocol in the examples.
    assert all("appProtocol" in p for p in svc["spec"]["ports"])


def test_docs_show_each_example_as_it_is_in_examples() -> None:
    docs = (serving_runtimes.ROOT / "docs" / "serving-runtimes.md").read_text()
    for runtime in serving_runtimes.RUNTIMES:
        text = (serving_runtimes.EXAMPLES / f"{runtime}.yaml").read_text()
        body = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
        assert body in docs, f"docs/serving-runtimes.md is out of date for {runtime}.yaml"
