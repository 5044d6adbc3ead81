"""Rollout behaviour against the real API server and the real operator: deadlines,
readiness, track: latest, new targets, conflicts, undo, retry, deletion and ownership."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import localcluster
import pytest

from e2e import rollouts as r
from e2e.test_analysis import metric_value
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = pytest.mark.usefixtures("ferryman_crds")
NEVER_READY = "registry.example/never-ready:1"


def phase_is(cluster: Cluster, ns: str, phase: str, name: str = "fraud") -> bool:
    return r.status(cluster, ns, name).get("phase") == phase


def mv_status(cluster: Cluster, ns: str, version: str) -> dict[str, Any]:
    obj = cluster.get_json("modelversion.ferryman.dev", "fraud-" + version.replace(".", "-"), ns)
    return dict((obj or {}).get("status") or {})


def healthy_on(cluster: Cluster, ns: str, version: str) -> bool:
    st = r.status(cluster, ns)
    return st.get("phase") == "Healthy" and st.get("stableVersion") == version


@pytest.mark.kwok
def test_never_ready_candidate_is_rolled_back_at_the_progress_deadline(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", ("1.1.0", NEVER_READY)), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", progressDeadlineSeconds=8), namespace=namespace)
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    sampler = r.Sampler(cluster, namespace, replicas=2)
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(lambda: phase_is(cluster, namespace, "RolledBack"), timeout=60, message="RolledBack")
    st = r.status(cluster, namespace)
    assert st["rolledBackVersions"] == ["1.1.0"]
    assert "progress deadline" in st["history"][-1]["reason"]
    assert r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
    wait_for(
        lambda: cluster.get_json("deployment", "fraud-1-1-0", namespace) is None,
        timeout=30,
        message="candidate removed",
    )
    # Stays RolledBack until a new target or retry.
    r.holds(cluster, namespace, 2, rollout=lambda o: o["status"]["phase"] == "RolledBack")
    assert sampler.stop() == []


@pytest.mark.kwok
def test_candidate_made_unready_loses_its_weight_and_gets_it_back(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.http_route(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
        timeout=60,
        message="candidate at 50%",
    )
    pod: str = (
        cluster.core.list_namespaced_pod(namespace, label_selector="ferryman.dev/version=1.1.0")  # type: ignore[assignment]
        .items[0]
        .metadata.name
    )
    cluster.kubectl(
        "annotate", "pod", pod, "-n", namespace, f"{localcluster.UNREADY_ANNOTATION}=true"
    )
    wait_for(
        lambda: r.http_route(cluster, namespace) == {"fraud-1-0-0": 100, "fraud-1-1-0": 0},
        timeout=20,
        message="weight withdrawn",
    )
    # kopf posts events in the background: wait for it rather than race it.
    wait_for(
        lambda: (
            "withdrawn"
            in cluster.kubectl(
                "get", "events", "-n", namespace, "--field-selector=reason=CandidateUnready"
            ).stdout
        ),
        timeout=20,
        message="CandidateUnready event",
    )
    cluster.kubectl("annotate", "pod", pod, "-n", namespace, f"{localcluster.UNREADY_ANNOTATION}-")
    wait_for(
        lambda: r.http_route(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
        timeout=20,
        message="weight back",
    )


@pytest.mark.kwok
def test_track_latest_rolls_each_new_version_and_retries_only_on_request(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    # A release candidate registered with 1.0.0 is never picked (no includePrereleases).
    cluster.apply(r.versions("1.0.0", "1.1.0-rc.1"), namespace=namespace)
    # A generous progress deadline while good versions roll out (a loaded machine can take
    # seconds to make a pod Ready), a short one only for the never-Ready version below.
    rollout = r.rollout(
        {"track": "latest"},
        progressDeadlineSeconds=60,
        strategy={"canary": {"steps": [{"setWeight": 50}]}},
    )
    cluster.apply(rollout, namespace=namespace)
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="1.0.0")
    cluster.apply(r.versions("1.1.0"), namespace=namespace)
    wait_for(
        lambda: healthy_on(cluster, namespace, "1.1.0"), timeout=60, message="1.1.0 rolled out"
    )
    cluster.kubectl(
        "patch", "rollout.ferryman.dev", "fraud", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"progressDeadlineSeconds": 8}}),
    )  # fmt: skip
    generation = cluster.get_json("rollout.ferryman.dev", "fraud", namespace)["metadata"][  # type: ignore[index]
        "generation"
    ]
    cluster.apply(r.versions(("1.2.0", NEVER_READY)), namespace=namespace)
    wait_for(
        lambda: phase_is(cluster, namespace, "RolledBack"), timeout=60, message="1.2.0 rolled back"
    )
    r.holds(  # not retried
        cluster,
        namespace,
        3,
        rollout=lambda o: (
            o["status"]["stableVersion"] == "1.1.0" and o["status"].get("candidateVersion") is None
        ),
    )
    # The Rollout itself was never touched: the operator never writes spec.
    assert (
        cluster.get_json("rollout.ferryman.dev", "fraud", namespace)["metadata"]["generation"]  # type: ignore[index]
        == generation
    )
    r.act(cluster, namespace, "retry")
    wait_for(
        lambda: (
            len(
                [
                    h
                    for h in r.status(cluster, namespace).get("history", [])
                    if h["version"] == "1.2.0"
                ]
            )
            == 2
        ),
        timeout=60,
        message="retried",
    )
    history = r.status(cluster, namespace)["history"]
    assert "1.1.0-rc.1" not in [h["version"] for h in history]


def test_new_target_mid_rollout_returns_traffic_to_stable_first(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0", "1.2.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(lambda: phase_is(cluster, namespace, "Paused"), timeout=60, message="1.1.0 at 50%")
    sampler = r.Sampler(cluster, namespace, replicas=2)
    r.retarget(cluster, namespace, "1.2.0")
    wait_for(
        lambda: r.http_route(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-2-0": 50},
        timeout=60,
        message="1.2.0 at 50%",
    )
    seen = sampler.samples
    assert {"fraud-1-0-0": 100, "fraud-1-2-0": 0} in seen  # stable got everything back first
    assert sampler.stop() == []
    st = r.status(cluster, namespace)
    assert [(h["version"], h["outcome"]) for h in st["history"]][-1] == ("1.1.0", "Superseded")
    assert cluster.get_json("deployment", "fraud-1-1-0", namespace) is None
    # Routine GitOps work: counted as Superseded, never as a rollback.
    text = urllib.request.urlopen(operator.metrics_url, timeout=5).read().decode()
    labels = {"namespace": namespace, "rollout": "fraud"}
    assert metric_value(text, "ferryman_rollouts_ended_total", outcome="Superseded", **labels) == 1
    assert not [
        line
        for line in text.splitlines()
        if line.startswith("ferryman_rollbacks_total{") and f'namespace="{namespace}"' in line
    ]


def test_second_rollout_for_the_same_model_is_invalid(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    cluster.apply(r.rollout("1.0.0", name="fraud-two"), namespace=namespace)
    wait_for(
        lambda: phase_is(cluster, namespace, "Invalid", "fraud-two"),
        timeout=30,
        message="second Rollout Invalid",
    )
    assert (
        "Rollout fraud already serves model fraud"
        in r.status(cluster, namespace, "fraud-two")["message"]
    )
    assert cluster.get_json("httproute", "fraud-two", namespace) is None
    assert healthy_on(cluster, namespace, "1.0.0")


def test_undo_returns_to_the_previous_stable(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout(
            "1.0.0", scaleDownDelaySeconds=300, strategy={"canary": {"steps": [{"setWeight": 50}]}}
        ),
        namespace=namespace,
    )
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="1.0.0")
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(lambda: healthy_on(cluster, namespace, "1.1.0"), timeout=60, message="1.1.0")
    r.act(cluster, namespace, "undo")
    wait_for(
        lambda: r.status(cluster, namespace).get("stableVersion") == "1.0.0",
        timeout=30,
        message="undone",
    )
    assert r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
    st = r.status(cluster, namespace)
    assert st["phase"] == "RolledBack" and st["rolledBackVersions"] == ["1.1.0"]
    assert st["lastAction"]["result"] == "Applied"
    assert (st["history"][-1]["outcome"], st["history"][-1]["cause"]) == ("RolledBack", "Undo")


def test_deleting_a_served_model_version_waits_and_deleting_the_rollout_cleans_up(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0"), namespace=namespace)
    # Delete: everything goes with the Rollout (KeepStable, the default, is test_deletion's).
    cluster.apply(r.rollout("1.0.0", deletionPolicy="Delete"), namespace=namespace)
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    wait_for(
        lambda: (
            "ferryman.dev/finalizer"
            in (cluster.get_json("mv", "fraud-1-0-0", namespace) or {})["metadata"].get(
                "finalizers", []
            )
        ),
        timeout=20,
        message="served ModelVersion protected",
    )
    cluster.kubectl("delete", "mv", "fraud-1-0-0", "-n", namespace, "--wait=false")

    def blocked(mv: dict[str, Any] | None) -> bool:
        assert mv is not None and mv["metadata"].get("deletionTimestamp"), mv
        conds = [c for c in mv["status"]["conditions"] if c["type"] == "DeletionBlocked"]
        return bool(conds) and "Rollout fraud still serves" in conds[0]["message"]

    wait_for(
        lambda: blocked(cluster.get_json("mv", "fraud-1-0-0", namespace)),
        timeout=30,
        message="DeletionBlocked",
    )
    r.holds(  # the ModelVersion waits and keeps serving
        cluster,
        namespace,
        3,
        modelversion__fraud_1_0_0=blocked,
        httproute=lambda o: r.route_weights(o) == {"fraud-1-0-0": 100},
    )

    cluster.kubectl("delete", "rollout.ferryman.dev", "fraud", "-n", namespace)
    wait_for(
        lambda: cluster.get_json("mv", "fraud-1-0-0", namespace) is None,
        timeout=30,
        message="ModelVersion deleted once no longer served",
    )
    for kind, name in [
        ("deployment", "fraud-1-0-0"),
        ("service", "fraud-1-0-0"),
        ("pdb", "fraud-1-0-0"),
        ("service", "fraud"),
        ("httproute", "fraud"),
    ]:
        wait_for(
            lambda k=kind, n=name: cluster.get_json(k, n, namespace) is None,  # type: ignore[misc]
            timeout=30,
            message=f"{kind}/{name} garbage-collected",
        )


def test_foreign_object_with_our_name_is_left_untouched_and_reported(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fraud-1-0-0"},
        "spec": {"selector": {"app": "someone-else"}, "ports": [{"port": 8080}]},
    }
    cluster.apply(foreign, namespace=namespace)
    cluster.apply(r.versions("1.0.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0"), namespace=namespace)
    wait_for(
        lambda: any(
            c["type"] == "OwnershipConflict" and c["status"] == "True"
            for c in r.status(cluster, namespace).get("conditions", [])
        ),
        timeout=30,
        message="conflict reported",
    )
    st = r.status(cluster, namespace)
    assert "Service fraud-1-0-0 exists and is not owned by this Rollout" in st["message"]
    svc = cluster.get_json("service", "fraud-1-0-0", namespace) or {}
    assert svc["spec"]["selector"] == {"app": "someone-else"}
    assert not svc["metadata"].get("ownerReferences")
    assert r.http_route(cluster, namespace) is None  # no traffic to a Service that isn't ours


SHADOW = {"mirrorPercent": 50, "duration": "3s"}


@pytest.mark.parametrize("then", ["canary", "stop"])
def test_shadow_then_canary_or_stop(
    cluster: Cluster, namespace: str, operator: OperatorProcess, then: str
) -> None:
    shadow: dict[str, object] = {**SHADOW, "then": then}
    if then == "canary":
        shadow["steps"] = [{"setWeight": 50}, {"pause": {}}]
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", strategy={"shadow": shadow}), namespace=namespace)
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    sampler = r.Sampler(cluster, namespace, replicas=2)
    # The shadow lasts 3 s: every state of the candidate's ModelVersion is recorded (a
    # poll can miss so short a window on a busy machine).
    mv_states = r.record(cluster, namespace, "modelversion__fraud_1_1_0", 30)
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("weights", {}).get("mirrorPercent") == 50,
        timeout=60,
        message="mirroring",
    )
    if then == "canary":
        wait_for(
            lambda: r.http_route(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
            timeout=60,
            message="continued as a canary at 50%",
        )
        st = r.status(cluster, namespace)
        assert st["phase"] == "Paused" and st["weights"]["mirrorPercent"] == 0
        wait_for(
            lambda: mv_status(cluster, namespace, "1.1.0").get("role") == "candidate",
            timeout=10,
            message="1.1.0 has role candidate on the canary steps",
        )
        r.act(cluster, namespace, "promote")
        wait_for(lambda: healthy_on(cluster, namespace, "1.1.0"), timeout=60, message="promoted")
    else:
        wait_for(
            lambda: (
                r.status(cluster, namespace).get("candidateVersion") is None
                and r.status(cluster, namespace).get("history", [{}])[-1].get("outcome")
                == "Stopped"
            ),
            timeout=60,
            message="shadow stopped",
        )
        st = r.status(cluster, namespace)
        assert st["phase"] == "Healthy" and st["stableVersion"] == "1.0.0"
        assert r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
        wait_for(
            lambda: cluster.get_json("deployment", "fraud-1-1-0", namespace) is None,
            timeout=30,
            message="candidate scaled down",
        )
        stable = cluster.get_json("deployment", "fraud-1-0-0", namespace) or {}
        assert stable["spec"]["replicas"] == 2  # stable untouched
        shadowed = mv_status(cluster, namespace, "1.1.0")
        assert shadowed["lastOutcome"]["outcome"] == "Stopped" and shadowed["role"] == "none"
    assert sampler.stop() == []
    roles = [(o or {}).get("status", {}).get("role") for o in mv_states()]
    assert "shadow" in roles, roles  # its role while it was mirrored


def test_blue_green_abort_returns_to_stable(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout("1.0.0", routing=r.ISTIO, strategy={"blueGreen": {"previewMirrorPercent": 20}}),
        namespace=namespace,
    )
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(lambda: phase_is(cluster, namespace, "Paused"), timeout=60, message="preview Ready")
    wait_for(
        lambda: mv_status(cluster, namespace, "1.1.0").get("role") == "preview",
        timeout=10,
        message="1.1.0 has role preview",
    )
    aborted = cluster.kubectl("ferryman", "abort", "fraud", "-n", namespace)
    assert "applied: abort — phase Aborted" in aborted.stdout
    vs = cluster.get_json("virtualservice", "fraud", namespace) or {}
    http = vs["spec"]["http"][0]
    assert [(d["destination"]["host"], d["weight"]) for d in http["route"]] == [
        ("fraud-1-0-0", 100)
    ]
    assert "mirror" not in http
    wait_for(
        lambda: (
            cluster.get_json("service", "fraud-preview", namespace) is None
            and cluster.get_json("deployment", "fraud-1-1-0", namespace) is None
        ),
        timeout=30,
        message="preview and candidate removed",
    )
    outcome = wait_for(
        lambda: mv_status(cluster, namespace, "1.1.0").get("lastOutcome"),
        timeout=10,
        message="1.1.0's lastOutcome",
    )
    assert (outcome["outcome"], outcome["reason"]) == ("Aborted", "aborted by user")


def test_service_router_replicas_follow_the_weights_at_every_sample(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    replicas = 4
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    steps = [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 75}, {"pause": {}}]
    cluster.apply(
        r.rollout(
            "1.0.0", routing=r.SERVICE, replicas=replicas, strategy={"canary": {"steps": steps}}
        ),
        namespace=namespace,
    )
    wait_for(lambda: healthy_on(cluster, namespace, "1.0.0"), timeout=60, message="stable")
    r.retarget(cluster, namespace, "1.1.0")
    samples: list[
        tuple[int, int, int, int]
    ] = []  # (stable spec, candidate spec, stable ready, cand ready)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ready = r.available(cluster, namespace)
        s, c = ready.get("fraud-1-0-0", (0, 0)), ready.get("fraud-1-1-0", (0, 0))
        samples.append((s[0], c[0], s[1], c[1]))
        if r.status(cluster, namespace).get("currentStep") == 3 and (s[0], c[0]) == (1, 3):
            break
        time.sleep(0.1)
    assert samples[-1][:2] == (1, 3), samples[-5:]  # 75% of 4 replicas
    # Ready capacity never drops below the replicas asked for while traffic shifts: the
    # candidate is Ready before the stable shrinks (a surge of at most one step's worth).
    for stable_spec, cand_spec, stable_ready, cand_ready in samples:
        assert stable_spec + cand_spec >= replicas
        assert stable_spec + cand_spec <= replicas + 3
        assert stable_ready + cand_ready >= replicas, samples
    settled = [x for x in samples if x[2] == x[0] and x[3] == x[1]]
    assert {(x[0], x[1]) for x in settled} <= {(4, 0), (4, 1), (3, 1), (3, 3), (1, 3)}, settled
    svc = cluster.get_json("service", "fraud", namespace) or {}
    assert "ferryman.dev/version" not in svc["spec"]["selector"]  # both versions behind it
