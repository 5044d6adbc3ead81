"""RBAC is minimal: the chart grants the operator nothing the whole e2e suite never used.

The e2e suite runs the operator as the cluster-scope chart's ServiceAccount
(``ferryman-system:ferryman``, tests/conftest.py ``operator_identity``) and the local
control plane's audit log records every request of that identity (Metadata level,
hack/cluster/localcluster.py AUDIT_POLICY). This test compares the (verb, apiGroup,
resource[/subresource]) triples the chart grants with those the audit log shows were
used since the run started, and fails on any grant never used that the allow-list below
does not name.

It only means something after the WHOLE suite: it is marked ``after_suite``, deselected
from ordinary runs, and hack/run-tests.sh runs it (``pytest --after-suite``) after a
full-suite run, with FERRYMAN_AUDIT_SINCE set to the time that run started. Run by hand
after a partial run it fails, honestly, listing the grants that the partial run did not
exercise; without FERRYMAN_AUDIT_SINCE it fails saying so.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import rbac
from harness.kube import Cluster

pytestmark = [pytest.mark.after_suite]

SINCE_ENV = "FERRYMAN_AUDIT_SINCE"

# Granted but not reached by any test, each with the code path that needs it. Keep it
# short: a new entry needs a reason no test can reach the path.
ALLOWED_UNUSED: dict[rbac.Triple, str] = {
    # ferryman.plan.labels.owner_reference sets blockOwnerDeletion on every object a
    # Rollout owns; the API server checks this permission only with the
    # OwnerReferencesPermissionEnforcement admission plugin (OpenShift), which the local
    # control plane does not enable, and the check is not a request of its own.
    ("update", "ferryman.dev", "rollouts/finalizers"): "plan.labels.owner_reference",
    # kopf's resource scanning when the operator watches all namespaces (the chart's
    # default, watchNamespaces: []): every e2e operator here watches its own namespace,
    # so scanning is off (handlers/lifecycle.py). tests/e2e/test_readme.py runs the
    # all-namespaces mode on a cluster of its own and checks, in that cluster's audit
    # log, that the chart's ServiceAccount makes exactly these requests, allowed.
    ("list", "apiextensions.k8s.io", "customresourcedefinitions"): "kopf resource_observer",
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions"): "kopf resource_observer",
}


def check(
    granted: set[rbac.Triple], used: set[rbac.Triple], allowed: dict[rbac.Triple, str]
) -> list[str]:
    """Problems, as sentences: grants never used (beyond ``allowed``), and allow-list
    entries that are stale (the grant was used after all, or is no longer granted)."""
    problems = [
        f"granted but never used: {verb} {group or 'core'}/{resource}"
        for verb, group, resource in sorted(rbac.unused(granted, used, allowed))
    ]
    for triple, path in sorted(allowed.items()):
        if triple not in granted:
            problems.append(f"allow-list entry {triple} ({path}) is not granted any more")
        elif triple in used:
            problems.append(f"allow-list entry {triple} ({path}) is used: remove it")
    return problems


@pytest.mark.audit_log
def test_every_granted_permission_was_used_by_the_suite(cluster: Cluster, tmp_path: Path) -> None:
    since_text = os.environ.get(SINCE_ENV)
    assert since_text, (
        f"{SINCE_ENV} is not set: run the whole suite with `make test` (hack/run-tests.sh "
        "sets it to the time the run started and runs this test afterwards)"
    )
    since = rbac.parse_since(since_text)
    objects = rbac.render(
        cluster.helm_bin,
        rbac.suite_values(),
        workdir=tmp_path,
    )
    user = f"system:serviceaccount:{rbac.OPERATOR_NAMESPACE}:{rbac.RELEASE}"
    events = list(rbac.read_audit(rbac.audit_log(), user=user, since=since))
    assert events, f"no request of {user} in the audit log since {since_text}"
    granted, used = rbac.granted(objects), rbac.used(events)
    print(
        f"RBAC: {len(granted)} triples granted, {len(used & granted)} used by the suite "
        f"({len(events)} audited requests since {since_text}), "
        f"{len(ALLOWED_UNUSED)} allow-listed"
    )
    for verb, group, resource in sorted(used):
        print(f"  used {verb} {group or 'core'}/{resource}")
    problems = check(granted, used, ALLOWED_UNUSED)
    refused = rbac.denied(events)
    problems += [
        f"refused during the suite (a permission missing from the chart): {t}"
        for t in sorted(refused)
    ]
    assert not problems, "\n".join(problems)
