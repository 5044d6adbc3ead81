"""Two replicas, one writer: two operator processes (the chart's ServiceAccount, two
identities) elect a leader on the Lease; the leader is SIGKILLed at random moments of
canaries, aborts and automatic rollbacks; the standby takes over and finishes each one,
and the killed process comes back as the new standby.

What must hold: the 100 ms sampler (e2e.rollouts.Sampler) never sees weights that do not
sum to 100 or weight on a backend without Ready capacity; every episode ends as it
should (Healthy on the new version, Aborted, RolledBack); the API server's audit log
shows the writes (every verb but get/list/watch) coming from one holder at a time, in
the order the Lease changed hands, none of the killed leader's after its kill and none
of the new one's before it, and no request of a standby but a GET of the Lease
(harness.ha); and a leader whose Lease another holder wrote exits with status 1.
Failover times (kill -> Lease acquired, kill -> first other write) are printed.

Knobs: FERRYMAN_HA_KILLS (default 2: `make test` runs a canary and an abort kill),
FERRYMAN_HA_TIMINGS ``short`` (default: lease 4 s, renew deadline 3 s, retry 1 s),
``default`` (ferryman's defaults, what the chart ships: 10/7/2) or ``L/R/P`` seconds,
FERRYMAN_TEST_SEED. `make ha` runs 10 kills with the default timings
(docs/reliability.md has its figures).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import rollouts as r
from harness import chart, ha, rbac
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.kwok, pytest.mark.audit_log]

LEASE = "ferryman-leader"  # the chart's name for release "ferryman"
NEVER_READY = "registry.example/never-ready:1"
TIMING_KEYS = ("leaseDurationSeconds", "renewDeadlineSeconds", "retryPeriodSeconds")
_SHIPPED = yaml.safe_load((chart.CHART / "values.yaml").read_text())["leaderElection"]
TIMINGS: dict[str, dict[str, float]] = {
    "short": {"leaseDurationSeconds": 4, "renewDeadlineSeconds": 3, "retryPeriodSeconds": 1},
    # ferryman's defaults as the chart ships them (10/7/2 s; tests/e2e/test_chart_render.py
    # checks the operator loads the same).
    "default": {key: _SHIPPED[key] for key in TIMING_KEYS},
}
STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "1s"}},
    {"setWeight": 50},
    {"pause": {"duration": "2s"}},
    {"setWeight": 75},
    {"pause": {"duration": "1s"}},
]
KINDS = ("canary", "abort", "rollback")  # the episode of kill i is KINDS[i % 3]
REPLICAS = 2


def holder(cluster: Cluster) -> str | None:
    try:
        lease: Any = client.CoordinationV1Api(cluster.api).read_namespaced_lease(
            LEASE, rbac.OPERATOR_NAMESPACE
        )
    except client.ApiException:
        return None
    return lease.spec.holder_identity  # type: ignore[no-any-return]


def patch_spec(cluster: Cluster, ns: str, spec: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "rollout.ferryman.dev", "fraud", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": spec}),
    )  # fmt: skip


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def candidate_weighted(cluster: Cluster, ns: str, version: str) -> bool:
    route = r.http_route(cluster, ns) or {}
    return route.get("fraud-" + version.replace(".", "-"), 0) > 0


def test_leader_killed_at_random_moments_one_writer_at_a_time(
    cluster: Cluster, namespace: str, operator_factory: Any, tmp_path: Path
) -> None:
    kills = int(os.environ.get("FERRYMAN_HA_KILLS", "2"))
    timing_name = os.environ.get("FERRYMAN_HA_TIMINGS", "short")
    timings = TIMINGS.get(timing_name)
    if timings is None:  # lease/renew/retry seconds, e.g. 12/8/2
        lease_s, renew_s, retry_s = timing_name.split("/")
        timings = {
            "leaseDurationSeconds": int(lease_s),
            "renewDeadlineSeconds": float(renew_s),
            "retryPeriodSeconds": float(retry_s),
        }
    seed = int(os.environ.get("FERRYMAN_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"HA: {kills} kills, {timing_name} timings {timings}, seed {seed} "
          f"(FERRYMAN_TEST_SEED={seed} reproduces the schedule)")  # fmt: skip
    rng = random.Random(seed)
    since = rbac.now()
    # The first leader creates the Lease (the chart grants `create` for that).
    cluster.kubectl("delete", "lease", LEASE, "-n", rbac.OPERATOR_NAMESPACE, "--ignore-not-found")
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "leaderElection": {
                    "enabled": True,
                    "namespace": rbac.OPERATOR_NAMESPACE,
                    **timings,
                }
            }
        )
    )
    names = [f"{namespace}-a", f"{namespace}-b"]
    ops: dict[str, OperatorProcess] = {
        who: operator_factory(env={"POD_NAME": who}, args=[f"--settings={settings}"])
        for who in names
    }

    good = [f"1.{i + 1}.0" for i in range(kills)]
    cluster.apply(
        r.versions("1.0.0", *[(v, NEVER_READY) if KINDS[i % 3] == "rollback" else v
                              for i, v in enumerate(good)]),
        namespace=namespace,
    )  # fmt: skip
    cluster.apply(
        r.rollout("1.0.0", strategy={"canary": {"steps": STEPS}}, replicas=REPLICAS),
        namespace=namespace,
    )
    ops[names[0]].start()
    wait_for(lambda: holder(cluster) == names[0], timeout=30, message="first leader")
    wait_for(
        lambda: r.status(cluster, namespace).get("phase") == "Healthy",
        timeout=60,
        message="1.0.0 stable",
    )
    ops[names[1]].start()  # the standby
    leaders, kill_times, mid = [names[0]], [], 0
    stable = "1.0.0"
    sampler = r.Sampler(cluster, namespace, replicas=REPLICAS, limit_s=60 + 60 * kills)

    for i, version in enumerate(good):
        kind = KINDS[i % 3]
        leader, standby = leaders[-1], names[1 - names.index(leaders[-1])]
        deadline = 5 if kind == "rollback" else 120
        patch_spec(
            cluster,
            namespace,
            {"target": {"version": version}, "progressDeadlineSeconds": deadline},
        )
        expected = {"canary": "Healthy", "abort": "Aborted", "rollback": "RolledBack"}[kind]

        def done(e: str = expected, v: str = version) -> bool:
            st = r.status(cluster, namespace)
            return st.get("phase") == e and (e != "Healthy" or st.get("stableVersion") == v)

        # An abort is one reconcile: the kill falls within a second before it (the new
        # leader must act on it) or just behind it (its clean-up). Else within 2.5 s of
        # the new target.
        offset = rng.uniform(-1.0, 0.3) if kind == "abort" else rng.uniform(0.2, 2.5)
        if kind == "abort":
            wait_for(
                lambda v=version: candidate_weighted(cluster, namespace, v),  # type: ignore[misc]
                timeout=60,
                message=f"{version} has weight",
            )
            if offset >= 0:
                r.act(cluster, namespace, "abort")
        time.sleep(max(offset, 0.0))
        phase = r.status(cluster, namespace).get("phase")
        mid += not done()
        kill_times.append(dt.datetime.now(dt.UTC))
        ops[leader].kill()
        if kind == "abort" and offset < 0:
            time.sleep(-offset)
            r.act(cluster, namespace, "abort")  # while the Lease changes hands
        print(f"kill {i + 1}/{kills} ({kind} to {version}): {leader} killed in phase {phase}")
        wait_for(
            lambda s=standby: holder(cluster) == s,  # type: ignore[misc]
            timeout=60,
            message=f"{standby} takes the Lease",
        )
        leaders.append(standby)
        # The new leader's metrics: the port its standby served is bound again by kopf's
        # startup (a failed bind would only be logged).
        wait_for(
            lambda s=standby: "ferryman_" in scrape(ops[s].metrics_url),  # type: ignore[misc]
            timeout=30,
            message=f"{standby} serves metrics as leader",
        )
        ops[leader].start()  # back as the standby
        wait_for(done, timeout=120, message=f"{kind} of {version} ends {expected}")
        if kind == "canary":
            stable = version
        assert r.status(cluster, namespace)["stableVersion"] == stable
        for who, op in ops.items():
            assert op.proc is not None and op.proc.poll() is None, f"{who} exited:\n{op.logs()}"

    for who, op in ops.items():  # every hand-over of the metrics port went through
        assert "metrics endpoint" not in op.logs(), f"{who}: {op.log_tail()}"
    violations = sampler.stop()
    assert violations == [], f"seed {seed}: {violations[:10]}"
    assert r.http_route(cluster, namespace) == {"fraud-" + stable.replace(".", "-"): 100}

    user = f"system:serviceaccount:{rbac.OPERATOR_NAMESPACE}:{rbac.RELEASE}"
    time.sleep(1)  # the audit log's last lines
    events = list(rbac.read_audit(rbac.audit_log(), user=user, since=since))
    writes = ha.writes(events, names)
    problems = ha.single_writer_problems(writes, leaders, kill_times)
    problems += ha.standby_problems(events, leaders, kill_times)
    assert not problems, f"seed {seed}:\n" + "\n".join(problems[:20])
    failovers = ha.failovers(writes, leaders, kill_times)
    print(f"HA: {len(writes)} writes by {len(ha.runs(writes))} tenures; {mid}/{kills} kills "
          f"mid-rollout; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    for n, f in enumerate(failovers, 1):
        print(f"  kill {n}: Lease acquired after {f.acquired_s}s, first other write after "
              f"{f.first_write_s}s")  # fmt: skip
    acquired = [f.acquired_s for f in failovers if f.acquired_s is not None]
    first = [f.first_write_s for f in failovers if f.first_write_s is not None]
    assert len(acquired) == kills, failovers
    print(f"HA failover ({timing_name} timings): Lease acquired median "
          f"{statistics.median(acquired):.1f}s max {max(acquired):.1f}s; first other write "
          f"median {statistics.median(first):.1f}s max {max(first):.1f}s")  # fmt: skip

    # Losing the Lease (someone else wrote it) ends the leader at once, with status 1.
    last = ops[leaders[-1]]
    cluster.kubectl(
        "patch", "lease", LEASE, "-n", rbac.OPERATOR_NAMESPACE, "--type=merge",
        "-p", json.dumps({"spec": {"holderIdentity": "intruder"}}),
    )  # fmt: skip
    assert last.proc is not None
    last.proc.wait(timeout=30 + timings["renewDeadlineSeconds"])
    assert last.proc.returncode == 1, last.log_tail()
    assert "did not renew Lease" in last.logs()
