"""A candidate whose artifact fails: the Rollout's status and an Event carry the
initializer's one-line reason, the candidate never gets traffic, stable keeps serving.

kwok runs no container, so the test plays the kubelet (``harness.podrun.Kubelet``): each
pod of the Rollouts (annotated ``ferryman.dev/test-kubelet`` through
``template.podAnnotations``) has its storage-initializer init container run as a local
process with the exact command, args and env of the rendered pod spec (mounts mapped to
temporary directories) against a loopback HTTPS server (``test_storage_init``'s), and
the kubelet's termination message written into the pod status. Three Rollouts at once:
"fraud" moves to a version whose digest does not match, "churn" to a missing object,
"crash" to a version whose model server (run as a process too) exits at once: a
``ServerFailed`` report, left to the progress deadline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import localcluster
import pytest

from cases.api_cases import model_version
from e2e import rollouts as r
from e2e.test_storage_init import ARTIFACT, https_server
from ferryman.plan.pod_failures import DETERMINISTIC, parse_reason, reason_line
from harness import podrun
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess
from harness.sampler import Sampler, http_route

# kwok: the pod-ready stage must leave the pods this test plays alone (podrun.TEST_KUBELET).
pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.kwok]
__all__ = ["https_server"]  # the fixture, used by name
GOOD = "sha256:" + hashlib.sha256(ARTIFACT).hexdigest()
WRONG = "sha256:" + "0" * 64
PATH = "/models/fraud/model.onnx"
# A model server that cannot load its model: one line in its termination-message file.
CRASH = (
    "import sys; open('/dev/termination-log', 'w').write('ModelLoadError: unsupported opset 99'); "
    "sys.exit(3)"
)


def versions(model: str, base: str, bad_uri: str, bad_digest: str) -> list[dict[str, Any]]:
    good = model_version(name=f"{model}-1-0-0", version="1.0.0", model=model)
    good["spec"]["artifact"] = {"uri": base + PATH, "digest": GOOD}
    bad = model_version(name=f"{model}-2-0-0", version="2.0.0", model=model)
    bad["spec"]["artifact"] = {"uri": bad_uri, "digest": bad_digest}
    return [good, bad]


def condition(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    conds = r.status(cluster, ns, name).get("conditions") or []
    return next((c for c in conds if c["type"] == "PodFailure"), {})


def warnings(cluster: Cluster, ns: str, name: str, reason: str) -> list[str]:
    events: Any = cluster.core.list_namespaced_event(ns)
    return [
        e.message for e in events.items if e.involved_object.name == name and e.reason == reason
    ]


def test_a_failing_artifact_is_reported_and_never_served(
    cluster: Cluster,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    https_server: tuple[str, Path, list[str]],
    tmp_path: Path,
) -> None:
    base, ca, seen_auth = https_server
    ns = namespace
    kwok_config = (localcluster.Layout().kwok_dir / "kwok.yaml").read_text()
    assert podrun.TEST_KUBELET in kwok_config, (
        "the running local control plane's kwok stages predate the test-kubelet exception "
        "(hack/cluster/stages/pod-ready.yaml): restart it (make down) and run again"
    )
    # The Rollouts' storage Secret: envFrom of the init container, which the test
    # kubelet resolves from the cluster like the kubelet does.
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "model-store"},
                "stringData": {"MODEL_STORE_TOKEN": "s3cret"},
            }
        ],
        namespace=ns,
    )
    settings = tmp_path / "settings.json"
    settings.write_text('{"storageInitializerImage": "ghcr.io/ferryman-dev/ferryman:test"}')
    operator_factory(args=[f"--settings={settings}"]).start()
    # The image's CA bundle, as the initializer's image would carry it; model servers
    # with a command run too, and one that exits within 5 s crashed.
    kubelet = podrun.Kubelet(
        cluster, ns, tmp_path, main_grace=5.0, extra_env={"SSL_CERT_FILE": str(ca)}
    )
    crashing = versions("crash", base, base + PATH, GOOD)
    crashing[1]["spec"]["serving"]["command"] = ["python", "-c", CRASH]
    cases = {
        "fraud": versions("fraud", base, base + PATH, WRONG),
        "churn": versions("churn", base, base + "/models/missing.onnx", GOOD),
        "crash": crashing,
    }
    for name, mvs in cases.items():
        cluster.apply(mvs, namespace=ns)
        cluster.apply(
            r.rollout(
                "1.0.0",
                name=name,
                model=name,
                replicas=1,
                progressDeadlineSeconds=15,
                template={"podAnnotations": {podrun.TEST_KUBELET: "true"}},
                storage={"secretName": "model-store"},
                strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
            ),
            namespace=ns,
        )
    wait_for(
        lambda: all(r.status(cluster, ns, n).get("phase") == "Healthy" for n in cases),
        timeout=40,
        message=f"every stable at 1.0.0 (kubelet: {kubelet.errors})",
    )
    sampler = Sampler(cluster, ns, replicas=1, limit_s=60)  # the route "fraud"
    weights: list[dict[str, int] | None] = []  # the routes "churn" and "crash"

    def sample() -> None:
        weights.extend(http_route(cluster, ns, n) for n in ("churn", "crash"))

    for name in cases:
        r.retarget(cluster, ns, "2.0.0", name=name)
    podrun.wait_played(kubelet, 3)
    lines = {
        pod.split("-2-0-0-")[0]: (pod, reason_line(result.message))
        for pod, result in kubelet.played.items()
    }
    assert sorted(lines) == ["churn", "crash", "fraud"], kubelet.played
    assert set(seen_auth) == {"Bearer s3cret"}, seen_auth  # every run had the Secret
    assert "0" * 64 in lines["fraud"][1], lines  # the expected digest, named
    assert "404" in lines["churn"][1] or "NotFound" in lines["churn"][1], lines
    assert lines["crash"][1] == "ModelLoadError: unsupported opset 99", lines
    reasons = {"fraud": "ArtifactFailed", "churn": "ArtifactFailed", "crash": "ServerFailed"}

    def reported() -> bool:
        sample()
        return all(lines[n][1] in condition(cluster, ns, n).get("message", "") for n in cases)

    wait_for(reported, timeout=20, message="the termination line on every Rollout")
    for name in cases:
        pod, line = lines[name]
        cond = condition(cluster, ns, name)
        assert pod in cond["message"], cond
        if cond["reason"] != reasons[name]:
            # Already rolled back (a deterministic artifact failure ends at once): the
            # condition keeps the last failure it reported.
            assert cond["reason"] == "NoFailure" and "; last: " in cond["message"], cond
            assert reasons[name] == "ArtifactFailed", cond
        assert line in r.status(cluster, ns, name).get("message", "") or any(
            line in (h.get("reason") or "") for h in r.status(cluster, ns, name).get("history", [])
        )

    # Ended: at once for an initializer reason of the contract no retry changes, else at
    # the progress deadline (plan.pod_failures); the stable serves 100% throughout.
    def ended() -> bool:
        sample()
        return all(r.status(cluster, ns, n).get("phase") == "RolledBack" for n in cases)

    wait_for(ended, timeout=30, message="every candidate rolled back")
    for name in cases:
        last = r.status(cluster, ns, name)["history"][-1]
        deterministic = name != "crash" and parse_reason(lines[name][1]) in DETERMINISTIC
        assert last["cause"] == ("ArtifactFailed" if deterministic else "ProgressDeadline"), last
        assert r.status(cluster, ns, name)["stableVersion"] == "1.0.0"
        # One Event per distinct message: no storm while the pod kept failing.
        found = warnings(cluster, ns, name, reasons[name])
        assert len(found) == 1 and lines[name][1] in found[0], found
    assert sampler.stop() == []
    assert all(s.get("fraud-2-0-0", 0) == 0 for s in sampler.samples), sampler.samples
    seen = [w for w in weights if w]
    assert seen and all(w.get(f"{n}-2-0-0", 0) == 0 for w in seen for n in ("churn", "crash"))
    assert kubelet.stop() == []
