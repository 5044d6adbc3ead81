"""``kubectl ferryman uninstall`` against a real API server, on a control plane of the
test's own (it deletes ferryman's CRDs, which the session's shared cluster must keep).

With the operator stopped mid-rollout, its finalizers are on the Rollout and the
ModelVersions it serves: deleting their namespace would hang forever. The command
(what the chart's pre-delete hook runs; kwok runs no hook containers, so the test runs it
itself) removes them, says what it did, does nothing the second time; then the namespace
goes, and with ``--delete-crds`` the CRDs go too, a Rollout holding the finalizer in
another namespace included.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import rollouts as r
from e2e.conftest import CRDS_DIR
from harness.clusters import fresh_cluster
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.kwok, pytest.mark.slow]
FINALIZER = "ferryman.dev/finalizer"
CRDS = ("rollouts.ferryman.dev", "modelversions.ferryman.dev")


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path / "cluster") as c:
        c.kubectl("apply", "--server-side", "-f", str(CRDS_DIR))
        c.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in CRDS)
        )
        yield c


def uninstall(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    done = cluster.kubectl("ferryman", "uninstall", *args, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def finalizers(cluster: Cluster, kind: str, name: str, ns: str) -> list[str]:
    found = cluster.get_json(kind, name, ns)
    assert found is not None, (kind, name)
    return list(found["metadata"].get("finalizers") or [])


def test_uninstall_lets_a_namespace_mid_rollout_and_the_crds_go_without_the_operator(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = own_cluster
    ns = cluster.create_namespace("uninstall")
    operator = OperatorProcess(cluster, namespaces=[ns], log_dir=tmp_path / "operator")
    try:
        operator.start()
        cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
        cluster.apply(r.rollout("1.0.0"), namespace=ns)
        wait_for(
            lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="1.0.0"
        )
        r.retarget(cluster, ns, "1.1.0")
        wait_for(
            lambda: r.status(cluster, ns).get("phase") == "Paused", timeout=60, message="mid-way"
        )
    finally:
        operator.stop()
    held = [
        ("rollout.ferryman.dev", "fraud"),
        ("modelversion.ferryman.dev", "fraud-1-0-0"),
        ("modelversion.ferryman.dev", "fraud-1-1-0"),
    ]
    for kind, name in held:
        assert FINALIZER in finalizers(cluster, kind, name, ns), (kind, name)

    # A Rollout holding the finalizer in another namespace (ferryman never ran there).
    other = cluster.create_namespace("uninstall-other")
    stray = r.rollout("1.0.0", name="stray")
    stray["metadata"]["finalizers"] = [FINALIZER]
    cluster.apply(stray, namespace=other)

    done = uninstall(cluster, "-n", ns)
    for kind, name in held:
        assert f"{kind.split('.')[0]}s.ferryman.dev {ns}/{name}: finalizer {FINALIZER} removed" in (
            done.stdout
        ), done.stdout
        assert FINALIZER not in finalizers(cluster, kind, name, ns)
    assert "stray" not in done.stdout  # one namespace only
    again = uninstall(cluster, "-n", ns)
    assert "nothing to do" in again.stdout, again.stdout

    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(
        lambda: cluster.get_json("namespace", ns) is None, timeout=90, message="namespace gone"
    )

    done = uninstall(cluster, "--all-namespaces", "--delete-crds")
    assert f"rollouts.ferryman.dev {other}/stray: finalizer {FINALIZER} removed" in done.stdout
    for crd in CRDS:
        assert f"customresourcedefinition.apiextensions.k8s.io {crd}: deleted" in done.stdout
    wait_for(
        lambda: all(cluster.get_json("crd", crd) is None for crd in CRDS),
        timeout=90,
        message="CRDs gone",
    )
    again = uninstall(cluster, "--all-namespaces", "--delete-crds")
    assert "no ferryman CRDs" in again.stdout, again.stdout
    assert json.loads(cluster.kubectl("get", "ns", other, "-o", "json").stdout)
