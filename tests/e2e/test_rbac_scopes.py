"""The chart's RBAC in both scopes, against the real authorizer.

- Cluster scope: ``kubectl auth can-i`` as the chart's ServiceAccount refuses what the
  operator must never do (read other Secrets, delete nodes, grant itself more), and
  allows the one named provider Secret.
- Namespaced scope: an operator bound only by the namespaced chart's Roles (release
  ``ferryman-ns`` in ferryman-system, so the audit log tells it apart from the cluster
  identity) completes a canary with an automatic rollback and a blue-green promotion,
  reading its provider Secret; the audit log shows it worked with no permission refused
  except kopf's cluster-wide observation (namespaces, CRDs), which it falls back from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import rollouts as r
from e2e.test_analysis import analysis, stable_on
from harness import rbac
from harness.dataplane import DataPlane
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess
from harness.prometheus import PrometheusServer

pytestmark = [pytest.mark.usefixtures("ferryman_crds")]

CLUSTER_SA = f"system:serviceaccount:{rbac.OPERATOR_NAMESPACE}:{rbac.RELEASE}"
NAMESPACED_RELEASE = "ferryman-ns"
# kopf observes namespaces and CRDs cluster-wide when it can; with explicit namespaces
# ferryman turns that scanning off (handlers/lifecycle.py), so none of these requests is
# even made (kopf would retry each refusal for about a minute before serving).
KOPF_OBSERVATION = {
    ("list", "", "namespaces"),
    ("watch", "", "namespaces"),
    ("list", "apiextensions.k8s.io", "customresourcedefinitions"),
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
}


def can_i(cluster: Cluster, user: str, *args: str) -> bool:
    """``kubectl auth can-i`` as ``user``: True for yes, False for no."""
    proc = cluster.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {args}: {proc.stdout}{proc.stderr}"
    return answer == "yes"


def test_cluster_scope_denies_what_the_operator_must_never_do(
    cluster: Cluster, operator_identity: rbac.Identity, namespace: str
) -> None:
    user = operator_identity.username
    assert user == CLUSTER_SA
    secret = rbac.PROVIDER_SECRETS[0]
    ns = rbac.OPERATOR_NAMESPACE
    # The named provider Secret, and nothing else about Secrets.
    assert can_i(cluster, user, "get", f"secrets/{secret}", "-n", ns)
    for args in (
        ("get", "secrets", "-n", ns),
        ("get", "secrets/some-other-secret", "-n", ns),
        ("get", f"secrets/{secret}", "-n", namespace),
        ("get", "secrets", "-A"),
        ("list", "secrets", "-n", ns),
        ("watch", "secrets", "-n", ns),
        ("delete", "nodes"),
        ("create", "clusterrolebindings"),
        ("create", "rolebindings", "-n", ns),
        ("escalate", "clusterroles"),
        ("create", "pods", "-n", namespace),
        ("create", "serviceaccounts/token", "-n", ns),
    ):
        assert not can_i(cluster, user, *args), f"the operator may {' '.join(args)}"
    # What it needs, as a guard that the identity above is bound at all.
    assert can_i(cluster, user, "patch", "rollouts.ferryman.dev/status", "-n", namespace)


@pytest.fixture
def namespaced_identity(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[rbac.Identity]:
    """The namespaced chart's ServiceAccount, bound only in the test namespace."""
    objects = rbac.render(
        cluster.helm_bin,
        rbac.values(
            scope="namespaced", watch_namespaces=[namespace], secrets=rbac.PROVIDER_SECRETS
        ),
        release=NAMESPACED_RELEASE,
        workdir=tmp_path,
    )
    assert {o["kind"] for o in objects} == {"ServiceAccount", "Role", "RoleBinding"}
    yield rbac.provision(cluster, objects, kubeconfig=tmp_path / "kubeconfig-namespaced")
    # The Role and RoleBinding in the test namespace go with it; the ServiceAccount
    # and the provider-Secret Role in ferryman-system are shared by later runs.


@pytest.mark.audit_log
def test_namespaced_scope_canary_rollback_and_blue_green_promotion(
    cluster: Cluster,
    namespace: str,
    namespaced_identity: rbac.Identity,
    prometheus: PrometheusServer,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    since = rbac.now()
    user = namespaced_identity.username
    # Nothing cluster-wide, nothing outside its namespace.
    assert not can_i(cluster, user, "list", "rollouts.ferryman.dev", "-A")
    assert not can_i(cluster, user, "list", "namespaces")
    assert not can_i(cluster, user, "patch", "deployments", "-n", "default")
    secret = rbac.apply_provider_secret(cluster)
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        json.dumps(
            {
                "providers": {"default": {"address": prometheus.url, "secretName": secret}},
                "namespace": rbac.OPERATOR_NAMESPACE,
                "storageInitializerImage": "",
            }
        )
    )
    dp = DataPlane(cluster, namespace).start()
    prometheus.add_target(f"dp-{namespace}", dp.address)
    try:
        op = operator_factory(
            args=[f"--settings={settings}"], kubeconfig=namespaced_identity.kubeconfig
        ).start()
        cluster.apply(r.versions("1.0.0", "1.1.0", "1.2.0"), namespace=namespace)
        cluster.apply(r.rollout("1.0.0", analysis=analysis()), namespace=namespace)
        stable_on(cluster, namespace, "1.0.0")

        # Canary: the candidate goes bad at 50% and is rolled back automatically.
        r.retarget(cluster, namespace, "1.1.0")
        wait_for(
            lambda: r.http_route(cluster, namespace) == {"fraud-1-0-0": 50, "fraud-1-1-0": 50},
            timeout=60,
            message="candidate at 50%",
        )
        dp.set("1.1.0", error_rate=0.3)
        wait_for(
            lambda: r.status(cluster, namespace).get("phase") == "RolledBack",
            timeout=90,
            message="RolledBack",
        )
        assert r.http_route(cluster, namespace) == {"fraud-1-0-0": 100}

        # Blue-green: a healthy preview is promoted automatically.
        cluster.kubectl(
            "patch",
            "rollout.ferryman.dev",
            "fraud",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps(
                {
                    "spec": {
                        "target": {"version": "1.2.0"},
                        "strategy": {
                            "canary": None,
                            "blueGreen": {"previewMirrorPercent": 50, "autoPromotionSeconds": 2},
                        },
                    }
                }
            ),
        )
        stable_on(cluster, namespace, "1.2.0")
        wait_for(
            lambda: r.http_route(cluster, namespace) == {"fraud-1-2-0": 100},
            timeout=60,
            message="1.2.0 live",
        )
        outcomes = [h["outcome"] for h in r.status(cluster, namespace)["history"]]
        assert outcomes == ["Promoted", "RolledBack", "Promoted"], outcomes
    finally:
        prometheus.remove_target(f"dp-{namespace}")
        dp.stop()
    print(f"namespaced scope: canary rollback + blue-green in {time.monotonic() - started:.1f}s")

    # The audit log: it was this identity that did the work, and nothing it needed
    # for that was refused (only kopf's optional cluster-wide observation).
    op.stop()
    events = list(rbac.read_audit(rbac.audit_log(), user=user, since=since))
    used = rbac.used(events)
    assert ("patch", "ferryman.dev", "rollouts/status") in used
    assert ("get", "", "secrets") in used  # the provider's Secret, by name
    assert ("patch", "gateway.networking.k8s.io", "httproutes") in used
    refused = rbac.denied(events)
    assert not refused, refused
    asked = rbac.used(events) | refused
    assert not asked & KOPF_OBSERVATION, asked & KOPF_OBSERVATION
    assert "Not enough permissions" not in op.logs()
    outside = {
        (e["objectRef"].get("namespace"), e["annotations"]["authorization.k8s.io/decision"])
        for e in events
        if e.get("objectRef") and e["objectRef"].get("namespace") != namespace
    }
    # Outside its namespace: the provider Secret only.
    assert outside <= {(rbac.OPERATOR_NAMESPACE, "allow")}, outside
