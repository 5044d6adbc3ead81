"""Prometheus analysis end to end: the real Prometheus scrapes the simulated data plane,
the real operator (a subprocess) measures, and rolls back, pauses or promotes."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from e2e import rollouts as r
from harness import rbac
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.prometheus]

SEL = 'namespace="{{namespace}}",version="{{version}}"'
ERRORS = (
    f'(sum(rate(model_requests_total{{{SEL},code="500"}}[3s])) or vector(0)) '
    f"/ sum(rate(model_requests_total{{{SEL}}}[3s]))"
)
SAMPLES = f"sum(increase(model_requests_total{{{SEL}}}[3s]))"
P99 = f"histogram_quantile(0.99, sum by (le) (rate(model_request_seconds_bucket{{{SEL}}}[3s])))"
INTERVAL_S, FAILURE_LIMIT = 2, 1


def analysis(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "provider": "default",
        "interval": f"{INTERVAL_S}s",
        "failureLimit": FAILURE_LIMIT,
        "inconclusiveLimit": 2,
        "consecutiveErrorLimit": 2,
        "minSamples": {"query": SAMPLES, "min": 10},
        "metrics": [{"name": "error-rate", "query": ERRORS, "max": 0.05}],
    }
    spec.update(extra)
    return spec


@pytest.fixture
def settings_file(tmp_path: Path, prometheus: PrometheusServer) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(
        json.dumps(
            {
                "providers": {"default": {"address": prometheus.url}},
                # The operator's own namespace, where provider Secrets live.
                "namespace": rbac.OPERATOR_NAMESPACE,
                "storageInitializerImage": "",
            }
        )
    )
    return path


@pytest.fixture
def analysing_operator(
    operator_factory: Callable[..., OperatorProcess], settings_file: Path
) -> OperatorProcess:
    return operator_factory(args=[f"--settings={settings_file}"]).start()


def stable_on(cluster: Cluster, ns: str, version: str) -> None:
    wait_for(
        lambda: (
            r.status(cluster, ns).get("stableVersion") == version
            and r.status(cluster, ns).get("phase") in ("Healthy", "Baking")
        ),
        timeout=90,
        message=f"{version} stable",
    )


def test_candidate_going_bad_at_50_percent_is_rolled_back_with_the_reason(
    cluster: Cluster, namespace: str, dataplane: DataPlane, analysing_operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", analysis=analysis()), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    sampler = r.Sampler(cluster, namespace, replicas=2)
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.http_route(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
        timeout=60,
        message="candidate at 50%",
    )
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Paused",
        timeout=30,
        message="paused at 50%",
    )
    # Healthy at 50% for a while (two analysis intervals): no rollback, on every change.
    r.holds(
        cluster,
        namespace,
        2 * INTERVAL_S,
        rollout=lambda o: o["status"]["phase"] == "Paused",
        httproute=lambda o: r.route_weights(o) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
    )
    dataplane.set("1.1.0", error_rate=0.2)
    # How fast is measured by bench/rollback.py (docs/benchmarks.md), not asserted here.
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=60,
        message="RolledBack",
    )
    assert r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
    st = r.status(cluster, namespace)
    reason = st["history"][-1]["reason"]
    assert "error-rate failed 2 times (limit 1)" in reason and "max 0.05" in reason
    assert 'version="1.1.0"' in reason and f'namespace="{namespace}"' in reason  # rendered query
    failed = [m for m in st["analysis"]["measurements"] if m["verdict"] == "Failed"]
    assert failed and failed[-1]["value"] > 0.05 and failed[-1]["threshold"] == "max 0.05"
    assert sampler.stop() == []


def test_healthy_candidate_promoted_then_bake_breach_returns_to_previous(
    cluster: Cluster, namespace: str, dataplane: DataPlane, analysing_operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout(
            "1.0.0",
            analysis=analysis(),
            bake={"duration": "5m"},
            strategy={"canary": {"steps": [{"setWeight": 50}]}},
        ),
        namespace=namespace,
    )
    stable_on(cluster, namespace, "1.0.0")
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Baking",
        timeout=90,
        message="promoted and baking",
    )
    assert r.http_route(cluster, namespace) == {"fraud-1-1-0": 100}
    st = r.status(cluster, namespace)
    assert st["history"][-1]["outcome"] == "Promoted"
    successes = [m for m in st["analysis"]["measurements"] if m["verdict"] == "Successful"]
    assert successes, "promoted without evidence"
    sampler = r.Sampler(cluster, namespace, replicas=2)
    dataplane.set("1.1.0", error_rate=0.3)
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=60,
        message="bake breach",
    )
    assert r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}
    assert r.status(cluster, namespace)["stableVersion"] == "1.0.0"
    assert "bake analysis" in r.status(cluster, namespace)["history"][-1]["reason"]
    # The previous stable was Ready before it got the weight back.
    assert sampler.stop() == []


def test_no_traffic_is_inconclusive_and_pauses_then_resumes(
    cluster: Cluster, namespace: str, dataplane: DataPlane, analysing_operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout(
            "1.0.0",
            analysis=analysis(),
            strategy={"canary": {"steps": [{"setWeight": 30}, {"setWeight": 60}]}},
        ),
        namespace=namespace,
    )
    stable_on(cluster, namespace, "1.0.0")
    dataplane.set("1.1.0", traffic=0)
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: (r.status(cluster, namespace).get("pause") or {}).get("reason") == "Inconclusive",
        timeout=60,
        message="paused: Inconclusive",
    )
    st = r.status(cluster, namespace)
    assert st["phase"] == "Paused" and st["weights"]["candidate"] == 30
    assert st.get("rolledBackVersions") is None  # never rolled back for lack of data
    # The pause's start, by reason, for the chart's paused-for-analysis alert.
    since = datetime.fromisoformat(st["pause"]["since"].replace("Z", "+00:00")).timestamp()
    labels = {"namespace": namespace, "rollout": "fraud"}
    paused_since = "ferryman_rollout_paused_since_timestamp_seconds"

    def scraped(reason: str) -> float | None:
        text = urllib.request.urlopen(analysing_operator.metrics_url, timeout=5).read().decode()
        return metric_value(text, paused_since, reason=reason, **labels)

    wait_for(lambda: scraped("Inconclusive") == since, timeout=30, message="pause gauge")
    dataplane.set("1.1.0", traffic=1)
    stable_on(cluster, namespace, "1.1.0")
    wait_for(lambda: scraped("Inconclusive") is None, timeout=30, message="pause gauge gone")


def test_prometheus_outage_pauses_and_never_rolls_back(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    analysing_operator: OperatorProcess,
    prometheus: PrometheusServer,
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(
        r.rollout(
            "1.0.0",
            analysis=analysis(),
            strategy={"canary": {"steps": [{"setWeight": 30}, {"setWeight": 60}]}},
        ),
        namespace=namespace,
    )
    stable_on(cluster, namespace, "1.0.0")
    prometheus.stop()
    try:
        r.retarget(cluster, namespace, "1.1.0")
        wait_for(
            lambda: (
                (r.status(cluster, namespace).get("pause") or {}).get("reason") == "AnalysisError"
            ),
            timeout=60,
            message="paused: AnalysisError",
        )
        errors = [
            m
            for m in r.status(cluster, namespace)["analysis"]["measurements"]
            if m["verdict"] == "Error"
        ]
        assert errors and "unreachable" in errors[-1]["message"]
    finally:
        prometheus.start()
    stable_on(cluster, namespace, "1.1.0")
    assert not r.status(cluster, namespace).get("rolledBackVersions")


def test_relative_latency_threshold_fails_where_the_absolute_one_passes(
    cluster: Cluster, namespace: str, dataplane: DataPlane, analysing_operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    metrics = [{"name": "p99-latency", "query": P99, "max": 1.0, "maxIncreaseVsStable": 0.2}]
    cluster.apply(r.rollout("1.0.0", analysis=analysis(metrics=metrics)), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    dataplane.set("1.0.0", latency=0.1)
    dataplane.set("1.1.0", latency=0.13)  # 30% slower, far below the absolute max of 1 s
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=90,
        message="RolledBack on relative latency",
    )
    failed = [
        m
        for m in r.status(cluster, namespace)["analysis"]["measurements"]
        if m["verdict"] == "Failed"
    ][-1]
    assert failed["metric"] == "p99-latency" and failed["value"] < 1.0
    assert failed["stableValue"] and failed["value"] > failed["stableValue"] * 1.2


def test_offline_gate_rejects_before_any_deployment(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    mvs = r.versions("1.0.0", "1.1.0")
    mvs[0]["spec"]["metrics"] = {"auc": 0.941}
    mvs[1]["spec"]["metrics"] = {"auc": 0.925}
    cluster.apply(mvs, namespace=namespace)
    gates = {"offlineMetrics": [{"name": "auc", "min": 0.9, "maxDropVsStable": 0.005}]}
    cluster.apply(r.rollout("1.0.0", gates=gates), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Rejected",
        timeout=30,
        message="Rejected",
    )
    assert "auc" in r.status(cluster, namespace)["history"][-1]["reason"]
    r.holds(
        cluster,
        namespace,
        2,
        deployments=lambda d: "fraud-1-1-0" not in d,
        httproute=lambda o: r.route_weights(o) == {"fraud-1-0-0": 100},
    )


def metric_value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_operator_metrics_count_rollbacks_and_promotions(
    cluster: Cluster, namespace: str, dataplane: DataPlane, analysing_operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0", "1.2.0"), namespace=namespace)
    cluster.apply(
        r.rollout(
            "1.0.0", analysis=analysis(), strategy={"canary": {"steps": [{"setWeight": 50}]}}
        ),
        namespace=namespace,
    )
    stable_on(cluster, namespace, "1.0.0")
    r.retarget(cluster, namespace, "1.1.0")
    stable_on(cluster, namespace, "1.1.0")
    dataplane.set("1.2.0", error_rate=0.5)
    r.retarget(cluster, namespace, "1.2.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=60,
        message="RolledBack",
    )
    import urllib.request

    text = urllib.request.urlopen(analysing_operator.metrics_url, timeout=5).read().decode()
    labels = {"namespace": namespace, "rollout": "fraud"}
    assert metric_value(text, "ferryman_promotions_total", **labels) == 2  # first + 1.1.0
    assert metric_value(text, "ferryman_rollbacks_total", reason="analysis", **labels) == 1
    assert metric_value(text, "ferryman_rollout_phase", phase="RolledBack", **labels) == 1
    assert metric_value(text, "ferryman_rollout_weight", role="stable", **labels) == 100
    assert (
        metric_value(
            text,
            "ferryman_analysis_measurements_total",
            metric="error-rate",
            verdict="Failed",
            **labels,
        )
        or 0
    ) >= 2
    assert (metric_value(text, "ferryman_rollback_duration_seconds_count") or 0) >= 1
    assert "1.2.0" not in text  # no label per version


class FakePrometheus:
    """A loopback stand-in that records the Authorization header of every query."""

    def __init__(self) -> None:
        import http.server
        import threading

        from harness.net import free_port

        self.auth: list[str] = []
        seen = self.auth

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization", ""))
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {}, "value": [0, "100"]}],
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def test_credentials_are_never_sent_to_an_inline_address(
    cluster: Cluster,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    from cases.api_cases import model_version

    configured, inline = FakePrometheus(), FakePrometheus()
    try:
        # The Secret lives where the real deployment keeps it: in the operator's
        # namespace, under a name the chart grants `get` on (harness.rbac).
        secret = rbac.apply_provider_secret(cluster)
        settings = tmp_path / "settings.yaml"
        settings.write_text(
            json.dumps(
                {
                    "providers": {"default": {"address": configured.url, "secretName": secret}},
                    "allowInlineAddresses": True,
                    "namespace": rbac.OPERATOR_NAMESPACE,
                    "storageInitializerImage": "",
                }
            )
        )
        operator_factory(args=[f"--settings={settings}"]).start()
        simple = {"interval": "1s", "metrics": [{"name": "m", "query": "up", "min": 1}]}
        cluster.apply(
            [
                model_version(name="fraud-1-0-0", version="1.0.0"),
                model_version(name="fraud-1-1-0", version="1.1.0"),
                model_version(name="churn-1-0-0", version="1.0.0", model="churn"),
                model_version(name="churn-1-1-0", version="1.1.0", model="churn"),
            ],
            namespace=namespace,
        )
        named = r.rollout("1.0.0", analysis={**simple, "provider": "default"})
        churn = r.rollout("1.0.0", name="churn", analysis={**simple, "address": inline.url})
        churn["spec"]["model"] = "churn"
        cluster.apply([named, churn], namespace=namespace)
        for name in ("fraud", "churn"):
            wait_for(
                lambda n=name: r.status(cluster, namespace, n).get("phase") == "Healthy",  # type: ignore[misc]
                timeout=60,
                message=f"{name} stable",
            )
            cluster.kubectl(
                "patch",
                "rollout.ferryman.dev",
                name,
                "-n",
                namespace,
                "--type=merge",
                "-p",
                json.dumps({"spec": {"target": {"version": "1.1.0"}}}),
            )
        wait_for(
            lambda: len(configured.auth) >= 2 and len(inline.auth) >= 2,
            timeout=60,
            message="both providers queried",
        )
        assert set(configured.auth) == {"Bearer s3cret"}
        assert set(inline.auth) == {""}
    finally:
        configured.close()
        inline.close()


def test_a_measurement_lost_to_a_crash_is_not_counted_twice(
    cluster: Cluster,
    namespace: str,
    dataplane: DataPlane,
    operator_factory: Callable[..., OperatorProcess],
    settings_file: Path,
) -> None:
    limit = 2
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    cluster.apply(r.rollout("1.0.0", analysis=analysis(failureLimit=limit)), namespace=namespace)
    first = operator_factory(args=[f"--settings={settings_file}"]).start()
    stable_on(cluster, namespace, "1.0.0")
    first.stop()
    dataplane.set("1.1.0", error_rate=0.5)
    # The next process dies right after its third round of measurements, before the status
    # write that would have recorded it (the first round may be inconclusive while the rate
    # window fills, so the lost round is a failure that has not rolled back yet).
    doomed = operator_factory(
        args=[f"--settings={settings_file}"], env={"FERRYMAN_TEST_KILL_AT": "after-measurement:3"}
    ).start()
    r.retarget(cluster, namespace, "1.1.0")
    assert doomed.proc is not None
    doomed.proc.wait(timeout=90)
    assert doomed.proc.returncode == 137
    before = r.status(cluster, namespace)
    assert before["phase"] != "RolledBack"
    # Not rolled back yet (how many of the recorded rounds were inconclusive while the rate
    # window filled depends on the machine's load).
    assert (before["analysis"].get("failures") or {}).get("error-rate", 0) <= limit
    operator_factory(args=[f"--settings={settings_file}"]).start()
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=60,
        message="RolledBack",
    )
    st = r.status(cluster, namespace)
    failed = [m for m in st["analysis"]["measurements"] if m["verdict"] == "Failed"]
    # Rolled back at the same count as without the crash: limit + 1 failures, each one a
    # recorded measurement (the lost round was measured again, not counted twice).
    assert st["analysis"]["failures"] == {"error-rate": limit + 1}
    assert len(failed) == limit + 1


def test_bad_shadow_is_rolled_back_while_users_only_see_stable(
    cluster: Cluster, namespace: str, dataplane: DataPlane, analysing_operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    shadow = {"shadow": {"mirrorPercent": 100, "duration": "5m", "then": "promote"}}
    cluster.apply(r.rollout("1.0.0", analysis=analysis(), strategy=shadow), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    sampler = r.Sampler(cluster, namespace, replicas=2)
    dataplane.set("1.1.0", error_rate=0.5)
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=60,
        message="shadow rolled back",
    )
    route = cluster.get_json("httproute", "fraud", namespace) or {}
    assert "filters" not in route["spec"]["rules"][0]  # mirror removed
    samples = sampler.samples
    assert sampler.stop() == []
    assert samples and all(s.get("fraud-1-0-0") == 100 for s in samples), samples


def test_bad_blue_green_preview_is_never_promoted(
    cluster: Cluster, namespace: str, dataplane: DataPlane, analysing_operator: OperatorProcess
) -> None:
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=namespace)
    bg = {"blueGreen": {"previewMirrorPercent": 50, "autoPromotionSeconds": 2}}
    cluster.apply(r.rollout("1.0.0", analysis=analysis(), strategy=bg), namespace=namespace)
    stable_on(cluster, namespace, "1.0.0")
    sampler = r.Sampler(cluster, namespace, replicas=2)
    dataplane.set("1.1.0", error_rate=0.5)
    r.retarget(cluster, namespace, "1.1.0")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
        timeout=60,
        message="bad preview rolled back",
    )
    assert sampler.stop() == []
    assert all(s.get("fraud-1-1-0", 0) == 0 for s in sampler.samples)  # never got live weight
    assert [h["outcome"] for h in r.status(cluster, namespace)["history"]] == [
        "Promoted",
        "RolledBack",
    ]
