"""The pure builders of one served version's Deployment, Service and PDB."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cases.api_cases import model_version, rollout
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import labels, serving
from ferryman.plan.route import Route
from ferryman.routing.service import ServiceRouter

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
