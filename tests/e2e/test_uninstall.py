"""``kubectl ferryman uninstall`` against a real API server.

With the operator stopped mid-rollout, its finalizers are on the Rollout and the
ModelVersions it serves: deleting their namespace would hang forever. The command
(what the chart's pre-delete hook runs; kwok runs no hook containers, so the test runs it
itself) removes them, says what it did, does nothing the second time; then the namespace
goes. With ``--delete-crds`` the three CRDs and the ModelApproval admission policy go
too, on a control plane of the test's own (the session's shared cluster must keep them).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import rollouts as r
from e2e.conftest import CRDS_DIR
from harness.clusters import fresh_cluster
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.kwok, pytest.mark.slow]
FINALIZER = "ferryman.dev/finalizer"
CRDS = ("rollouts.ferryman.dev", "modelversions.ferryman.dev", "modelapprovals.ferryman.dev")
POLICY = "modelapprovals.ferryman.dev"  # the ValidatingAdmissionPolicy and its binding


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with fresh_cluster(tmp_path / "cluster") as c:
        c.kubectl("apply", "--server-side", "-f", str(CRDS_DIR), "-f", str(CRDS_DIR / "policies"))
        c.wait_established(*CRDS)
        yield c


def uninstall(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    done = cluster.kubectl("ferryman", "uninstall", *args, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def finalizers(cluster: Cluster, kind: str, name: str, ns: str) -> list[str]:
    found = cluster.get_json(kind, name, ns)
    assert found is not None, (kind, name)
    return list(found["metadata"].get("finalizers") or [])


@pytest.mark.usefixtures("ferryman_crds")
def test_uninstall_lets_a_namespace_mid_rollout_go_without_the_operator(
    local_cluster: Cluster, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    cluster, ns = local_cluster, namespace
    operator = operator_factory().start()
    cluster.apply(r.versions("1.0.0", "1.1.0"), namespace=ns)
    cluster.apply(r.rollout("1.0.0"), namespace=ns)
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Healthy", timeout=60, message="1.0.0")
    r.retarget(cluster, ns, "1.1.0")
    wait_for(lambda: r.status(cluster, ns).get("phase") == "Paused", timeout=60, message="mid-way")
    operator.stop()
    held = [
        ("rollout.ferryman.dev", "fraud"),
        ("modelversion.ferryman.dev", "fraud-1-0-0"),
        ("modelversion.ferryman.dev", "fraud-1-1-0"),
    ]
    for kind, name in held:
        assert FINALIZER in finalizers(cluster, kind, name, ns), (kind, name)

    done = uninstall(cluster, "-n", ns)
    for kind, name in held:
        line = f"{kind.split('.')[0]}s.ferryman.dev {ns}/{name}: finalizer {FINALIZER} removed"
        assert line in done.stdout, done.stdout
        assert FINALIZER not in finalizers(cluster, kind, name, ns)
    assert len(done.stdout.splitlines()) == len(held)  # this namespace only
    again = uninstall(cluster, "-n", ns)
    assert again.stdout == f"no ferryman finalizer left in namespace {ns}: nothing to do\n"

    cluster.kubectl("delete", "namespace", ns, "--wait=false")
    wait_for(
        lambda: cluster.get_json("namespace", ns) is None, timeout=90, message="namespace gone"
    )


def test_uninstall_deletes_the_crds_even_with_finalizers_left(own_cluster: Cluster) -> None:
    """On a control plane of the test's own: a Rollout and a ModelVersion holding the
    finalizer (ferryman never ran there, nothing would ever remove it); ``-A
    --delete-crds`` removes it, the three CRDs and the approval policy with its binding,
    which are then gone."""
    cluster = own_cluster
    ns = cluster.create_namespace("uninstall")
    for obj in (r.rollout("1.0.0"), *r.versions("1.0.0")):
        obj["metadata"]["finalizers"] = [FINALIZER]
        cluster.apply(obj, namespace=ns)
    done = uninstall(cluster, "--all-namespaces", "--delete-crds")
    assert f"rollouts.ferryman.dev {ns}/fraud: finalizer {FINALIZER} removed" in done.stdout
    assert f"modelversions.ferryman.dev {ns}/fraud-1-0-0: finalizer {FINALIZER} removed" in (
        done.stdout
    )
    for crd in CRDS:
        assert f"customresourcedefinition.apiextensions.k8s.io {crd}: deleted" in done.stdout
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        assert f"{kind}.admissionregistration.k8s.io {POLICY}: deleted" in done.stdout
    wait_for(
        lambda: all(cluster.get_json("crd", crd) is None for crd in CRDS),
        timeout=90,
        message="CRDs gone",
    )
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        assert cluster.get_json(kind, POLICY) is None, kind
    again = uninstall(cluster, "--all-namespaces", "--delete-crds")
    assert "no ferryman CRDs" in again.stdout, again.stdout
