"""Fuzzed manifests the API server accepts, served by the real operator (issue 13 §3):
each reaches a phase, never a crash, a traceback or a retry loop; a Rollout that cannot
be served is ``Invalid`` with a reason (the Stalled condition and an ``Invalid`` Event).

``cases.fuzz_manifests.served()`` draws a Rollout at the schema's edges (every router
with every strategy it can carry out, odd durations, bounds) and 0-2 ModelVersions of
its model, its pinned target among them or not. 100 such groups per ``make test``
(derandomized; ten times as many under ``make fuzz``) are created for real in one
namespace, in one batch, while one operator (the chart's ServiceAccount, a Prometheus
provider whose address refuses connections) serves them; names get the group's number
(``z007…`` the Rollout, ``y007…`` its ModelVersions, ``m007…`` the model) so groups never
share a model and every object (Deployments, Services, routes, Events are named after
them) is counted against its group. Then:

- every ModelVersion has a phase and every Rollout has one, within ``PHASE_TIMEOUT``;
- an ``Invalid`` Rollout has the Stalled condition with reason Invalid and a message,
  and an ``Invalid`` Event;
- the operator is alive, and its log has no traceback and no retried reconcile;
- over the whole test, no group costs more than ``REQUESTS_PER_GROUP`` API requests
  (the local control plane's audit log, by object name): a retry loop, or a reconcile
  that re-runs on its own writes, costs far more.

Replicas are capped at 3 (the admission fuzz covers the bound of 1000): a hundred
Rollouts of 1000 kwok pods each would measure the machine, not the operator.
"""

from __future__ import annotations

import collections
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from cases import fuzz_manifests as fm
from cases import fuzz_profile
from harness import rbac
from harness.kube import Cluster, wait_for
from harness.net import free_port
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.audit_log]

RECONCILE_EXAMPLES = 100
# Seconds for every object to have a phase: a hundred groups take about 40 s on a loaded
# machine; `make fuzz` serves SCALE times as many in one namespace.
PHASE_TIMEOUT = 180.0 * (fuzz_profile.SCALE if fuzz_profile.FUZZ else 1)
MAX_REPLICAS = 3
# Requests by the operator per group (its ModelVersions, Rollout and every object named
# after them) over the whole test: at most 59 measured (a canary to Healthy with its
# Deployments, Services, route, status writes and Events); a reconcile looping without
# pause costs hundreds within the test (docs/reliability.md).
REQUESTS_PER_GROUP = 100
MV_PHASES = {"Registered", "Duplicate", "Serving", "Retired"}


def numbered(manifests: list[fm.Manifest], i: int) -> list[fm.Manifest]:
    """The group's manifests renamed for group ``i``, keeping each name's length where
    it is longer than the prefix (the length edges stay)."""
    tag = f"{i:03d}"

    def rename(prefix: str, old: str, last: str = "") -> str:
        new = prefix + tag + old[4:] if len(old) > 4 else prefix + tag
        return new[:-1] + last if last and len(new) > 4 else new + last

    out = []
    for j, m in enumerate(manifests):
        m = json.loads(json.dumps(m))
        if m["kind"] == "Rollout":
            m["metadata"]["name"] = rename("z", m["metadata"]["name"])
            m["spec"]["replicas"] = min(m["spec"].get("replicas", 1), MAX_REPLICAS)
        else:
            m["metadata"]["name"] = rename("y", m["metadata"]["name"], str(j))
        m["spec"]["model"] = rename("m", m["spec"]["model"])
        out.append(m)
    return out


def group_of(name: str) -> str | None:
    found = re.match(r"^[yzm](\d{3})", name)
    return found.group(1) if found else None


def _settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                # Nothing listens there: every measurement errs, as in a Prometheus outage.
                "providers": {"default": {"address": f"http://127.0.0.1:{free_port()}"}},
                "allowInlineAddresses": True,
                "namespace": rbac.OPERATOR_NAMESPACE,
                "storageInitializerImage": "",
            }
        )
    )
    return path


def _requests_by_group(namespace: str, since: Any) -> collections.Counter[str]:
    user = f"system:serviceaccount:{rbac.OPERATOR_NAMESPACE}:{rbac.RELEASE}"
    counts: collections.Counter[str] = collections.Counter()
    for e in rbac.read_audit(rbac.audit_log(), user=user, since=since):
        ref = e.get("objectRef") or {}
        group = group_of(ref.get("name") or "")
        if ref.get("namespace") == namespace and group and e["verb"] not in ("watch", "list"):
            counts[group] += 1
    return counts


def _items(cluster: Cluster, namespace: str, plural: str) -> list[dict[str, Any]]:
    listed = cluster.custom.list_namespaced_custom_object(
        "ferryman.dev", "v1alpha1", namespace, plural
    )
    assert isinstance(listed, dict)
    items: list[dict[str, Any]] = listed["items"]
    return items


def _phases(cluster: Cluster, namespace: str, plural: str) -> dict[str, str | None]:
    items = _items(cluster, namespace, plural)
    return {o["metadata"]["name"]: (o.get("status") or {}).get("phase") for o in items}


def check_served(
    cluster: Cluster, namespace: str, operator: OperatorProcess, groups: list[list[fm.Manifest]]
) -> dict[str, str]:
    """Wait until every object of ``groups`` has a phase and check what the module
    docstring lists; returns each Rollout's phase."""
    names = {m["metadata"]["name"]: m["kind"] for g in groups for m in g}

    def missing() -> list[str]:
        have = {
            **_phases(cluster, namespace, "modelversions"),
            **_phases(cluster, namespace, "rollouts"),
        }
        return [n for n in names if not have.get(n)]

    try:
        wait_for(lambda: not missing(), timeout=PHASE_TIMEOUT, interval=1.0, message="phases")
    except AssertionError as e:
        raise AssertionError(f"no phase after {PHASE_TIMEOUT}s: {missing()}") from e
    mvs = _phases(cluster, namespace, "modelversions")
    assert all(mvs[n] in MV_PHASES for n, k in names.items() if k == "ModelVersion"), mvs
    items = _items(cluster, namespace, "rollouts")
    rollouts = {o["metadata"]["name"]: o for o in items if o["metadata"]["name"] in names}
    events = cluster.core.list_namespaced_event(namespace).items
    invalid_events = {e.involved_object.name for e in events if e.reason == "Invalid"}
    reasons: collections.Counter[str] = collections.Counter()
    for name, ro in rollouts.items():
        conditions = {c["type"]: c for c in ro["status"].get("conditions") or []}
        # An object ferryman derived from an accepted manifest that the API server then
        # refused: either the CRD should have refused the manifest, or ferryman built
        # the object wrong.
        refused = conditions.get("ApplyFailed", {})
        assert refused.get("status") != "True", (
            f"{name}: {refused}: {json.dumps(ro['spec'])[:2000]}"
        )
        if ro["status"]["phase"] != "Invalid":
            continue
        stalled = conditions.get("Stalled", {})
        assert stalled.get("status") == "True" and stalled.get("reason") == "Invalid", stalled
        assert stalled["message"], f"{name}: Invalid without a message"
        assert name in invalid_events, f"{name}: Invalid without an Invalid Event"
        reasons[re.sub(r"'[^']*'|\d+|\S*[0-9]\S*", "…", stalled["message"])[:80]] += 1
    for reason, n in reasons.most_common():
        print(f"  {n:4d}  Invalid: {reason}")
    assert operator.proc is not None and operator.proc.poll() is None, operator.log_tail()
    log = operator.logs()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    for bad in ("retrying in", "HTTP 4"):  # a retried reconcile, a refused write
        assert bad not in log, [line for line in log.splitlines() if bad in line][:5]
    return {n: ro["status"]["phase"] for n, ro in rollouts.items()}


@pytest.mark.timeout(600 * (fuzz_profile.SCALE if fuzz_profile.FUZZ else 1))
def test_fuzzed_manifests_are_reconciled_to_a_phase(
    cluster: Cluster,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    print(fuzz_profile.describe())
    operator = operator_factory(args=[f"--settings={_settings(tmp_path)}"]).start()
    since = rbac.now()
    groups: list[list[fm.Manifest]] = []

    def add(group: list[fm.Manifest]) -> str:
        """Number the group; returns its Rollout's name."""
        groups.append(numbered(group, len(groups)))
        return str(groups[-1][-1]["metadata"]["name"])

    def create(group: list[fm.Manifest]) -> None:
        for m in group:  # its ModelVersions first
            cluster.custom.create_namespaced_custom_object(
                "ferryman.dev",
                "v1alpha1",
                namespace,
                m["kind"].lower() + "s",
                m,
                field_validation="Strict",
            )

    started = time.monotonic()
    # Drawn by Hypothesis, then created in one batch: checking each group alone would
    # wait for the operator 100 times. Not shrunk (the check runs once for the batch); a
    # failing group is printed whole, to be cut down and kept as a regression. Every
    # (router, strategy) gets its share of the examples.
    per = -(-RECONCILE_EXAMPLES // len(fm.COMBINATIONS))
    for combination in fm.COMBINATIONS:

        @fuzz_profile.fuzz(per, shrink=False)
        @given(group=fm.served(combination))
        def fuzzed(group: list[fm.Manifest]) -> None:
            add(group)

        fuzzed()
    # The regressions the fuzzer found once, served in the same batch.
    expected = {add(r.manifests): r for r in fm.regressions() if r.phase is not None}
    print(f"{len(groups)} groups drawn in {time.monotonic() - started:.1f}s")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, groups))
    print(f"{len(groups)} groups drawn and created in {time.monotonic() - started:.1f}s")
    phases = check_served(cluster, namespace, operator, groups)
    print(f"every object has a phase after {time.monotonic() - started:.1f}s")
    for name, regression in expected.items():

        def reached(name: str = name, want: str | None = regression.phase) -> bool:
            return _phases(cluster, namespace, "rollouts")[name] == want

        wait_for(
            reached,
            timeout=PHASE_TIMEOUT,
            message=f"regression {regression.name}: phase {regression.phase}",
        )
    phases = check_served(cluster, namespace, operator, groups)
    print(f"{len(groups)} groups served in {time.monotonic() - started:.1f}s")
    print("Rollout phases:", dict(collections.Counter(phases.values())))
    # The audit log is written asynchronously: read it until two reads agree.
    counts = _requests_by_group(namespace, since)
    for _ in range(20):
        time.sleep(0.5)
        again = _requests_by_group(namespace, since)
        if again == counts:
            break
        counts = again
    worst = counts.most_common(3)
    print(f"operator requests per group: max {worst}, total {sum(counts.values())}")
    for group, n in worst:
        assert n <= REQUESTS_PER_GROUP, (
            f"group {group}: {n} requests (bound {REQUESTS_PER_GROUP}): "
            + json.dumps(groups[int(group)])[:4000]
        )
