"""plan/initializer.py: the init container's exact arguments and the termination-message
contract, the model volume's size, and a claim mounted read-only instead of a copy."""

from __future__ import annotations

from typing import Any

from cases.api_cases import model_version, rollout
from ferryman import storage_init
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import initializer, serving

DIGEST = "sha256:" + "ab" * 32


def pod(artifact: dict[str, Any], **rollout_spec: Any) -> dict[str, Any]:
    m = model_version()
    m["metadata"]["namespace"] = "risk"
    m["spec"]["artifact"] = {"digest": DIGEST, **artifact}
    r = rollout()
    r["metadata"].update(namespace="risk", uid="uid-1")
    r["spec"].update(rollout_spec)
    d = serving.deployment(
        ModelVersion.model_validate(m), Rollout.model_validate(r), replicas=1, init_image="img:1"
    )
    spec: dict[str, Any] = d["spec"]["template"]["spec"]
    return spec


def test_the_init_container_runs_the_initializer_with_parseable_args() -> None:
    spec = pod({"uri": "s3://models/fraud/model.onnx"}, storage={"secretName": "s3-creds"})
    (init,) = spec["initContainers"]
    assert init["command"] == ["python", "-m", "ferryman.storage_init"]
    assert init["args"] == [
        "--uri=s3://models/fraud/model.onnx",
        f"--digest={DIGEST}",
        "--dest=/mnt/models",
        "--pvc-root=/mnt/pvc",
        "--termination-log=/dev/termination-log",
    ]
    # The initializer's own parser accepts exactly these arguments.
    args = storage_init._parser().parse_args(init["args"])
    assert str(args.termination_log) == init["terminationMessagePath"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert init["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert init["resources"] == initializer.RESOURCES


def test_artifact_size_limits_the_model_volume_and_requests_ephemeral_storage() -> None:
    spec = pod({"uri": "gs://models/fraud", "size": "20Gi"})
    assert spec["volumes"] == [{"name": "model-store", "emptyDir": {"sizeLimit": "20Gi"}}]
    (init,) = spec["initContainers"]
    assert init["resources"]["requests"]["ephemeral-storage"] == "20Gi"
    # Without a size: no limit, and the documented defaults alone.
    unsized = pod({"uri": "gs://models/fraud"})
    assert unsized["volumes"] == [{"name": "model-store", "emptyDir": {}}]
    assert "ephemeral-storage" not in unsized["initContainers"][0]["resources"]["requests"]


def test_a_claim_is_mounted_read_only_and_never_copied() -> None:
    spec = pod({"uri": "pvc://model-store/fraud/1.3.0", "size": "5Gi"})
    assert spec["volumes"] == [
        {
            "name": "model-claim",
            "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
        }
    ]
    (init,) = spec["initContainers"]
    assert init["volumeMounts"] == [
        {"name": "model-claim", "mountPath": "/mnt/pvc/model-store", "readOnly": True}
    ]
    server = spec["containers"][0]
    assert server["volumeMounts"] == [
        {
            "name": "model-claim",
            "mountPath": "/mnt/models/1.3.0",
            "subPath": "fraud/1.3.0",
            "readOnly": True,
        }
    ]
    # Nothing is downloaded: no ephemeral storage asked for.
    assert "ephemeral-storage" not in init["resources"]["requests"]
