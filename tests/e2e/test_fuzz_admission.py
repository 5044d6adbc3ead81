"""Fuzzed manifests against the real API server (issue 13 §3): every refusal names the
field, every acceptance round-trips.

``cases.fuzz_manifests.case()`` draws a ModelVersion or Rollout the CRDs must accept, or
one with a single field pushed to or past an edge its schema states. Each goes to the API
server as a server-side dry run (``dryRun=All``: admission and validation run in full,
nothing is stored) with ``fieldValidation=Strict``, as ``kubectl apply`` sends it. Then:

- a manifest the API server must refuse is refused, and one it must accept is accepted;
- a refusal names the field aimed at: one of the Status' ``details.causes[].field`` is
  the field or an ancestor below ``spec``, or the message carries the field's name (or
  its parent's: a rule on an object, "target needs exactly one of version ...");
- an accepted manifest comes back with the spec it was sent (nothing pruned or
  rewritten), and the operator's own models read it: an object the API server stores
  and the operator cannot parse would fail every reconcile.

500 examples per ``make test`` (derandomized), ten times as many under ``make fuzz``
(``cases.fuzz_profile``); a failure shrinks to a minimal manifest, which is committed to
``tests/cases/fuzz_regressions/`` and replayed by
``test_fuzz_regression_admission`` every run.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any

import pytest
from hypothesis import given
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from cases import fuzz_manifests as fm
from cases import fuzz_profile
from cases import fuzz_schema as schema
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")

ADMISSION_EXAMPLES = 500
MODELS = {"ModelVersion": ModelVersion, "Rollout": Rollout}


def dry_run(
    cluster: Cluster, namespace: str, manifest: fm.Manifest
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the object as the API server would store it, None) or (None, its Status)."""
    try:
        stored = cluster.custom.create_namespaced_custom_object(
            "ferryman.dev",
            "v1alpha1",
            namespace,
            manifest["kind"].lower() + "s",
            manifest,
            dry_run="All",
            field_validation="Strict",
        )
    except ApiException as e:
        if e.status not in (400, 422):
            raise
        return None, json.loads(e.body or "{}")
    assert isinstance(stored, dict)
    return stored, None


def names_the_field(status: dict[str, Any], path: str) -> bool:
    """Whether the Status names ``path`` (``spec.strategy.canary.steps[2].setWeight``)."""
    causes = (status.get("details") or {}).get("causes") or []
    for field in (c.get("field") or "" for c in causes):
        if path == field:
            return True
        if field in ("", "<nil>", "spec"):
            continue
        if path.startswith((field + ".", field + "[")):
            return True
    keys = [p for p in re.split(r"[.\[\]]+", path) if p and not p.isdigit() and p != "spec"]
    text = status.get("message", "") + " " + " ".join(c.get("message", "") for c in causes)
    return any(re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", text) for k in keys[-2:])


def numbers_as_floats(value: Any) -> Any:
    """``value`` with every number a float: the API server writes 4.6e16 back as the
    integer 46048092257364570, the same double."""
    if isinstance(value, dict):
        return {k: numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_as_floats(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def check(
    cluster: Cluster, namespace: str, manifest: fm.Manifest, expect: str, path: str | None
) -> str:
    """Dry-run ``manifest`` and assert the properties above; returns the outcome."""
    stored, status = dry_run(cluster, namespace, manifest)
    if status is not None:
        message = status.get("message", "")
        assert expect != "accept", f"refused a manifest the CRD must accept: {message}"
        assert path is not None and names_the_field(status, path), (
            f"the refusal does not name {path}: {json.dumps(status)}"
        )
        return "refused"
    assert stored is not None
    assert expect != "reject", f"accepted a manifest with {path} past its edge"
    expected = schema.with_defaults(manifest["kind"], manifest["spec"])
    assert numbers_as_floats(stored["spec"]) == numbers_as_floats(expected), (
        "the API server pruned or rewrote the spec"
    )
    try:
        MODELS[manifest["kind"]].model_validate(stored)
    except ValidationError as e:
        raise AssertionError(f"the API server accepts what the operator cannot read: {e}") from e
    return "accepted"


@pytest.mark.timeout(600 * (fuzz_profile.SCALE if fuzz_profile.FUZZ else 1))
def test_fuzzed_manifests_are_refused_naming_the_field_or_accepted_whole(
    cluster: Cluster, namespace: str
) -> None:
    print(fuzz_profile.describe())
    tally: collections.Counter[str] = collections.Counter()
    combinations: set[tuple[str, str]] = set()

    @fuzz_profile.fuzz(ADMISSION_EXAMPLES)
    @given(case=fm.case())
    def admission(case: fm.Case) -> None:
        outcome = check(cluster, namespace, case.manifest, case.expect, case.path)
        tally[f"{case.manifest['kind']} {case.mutation} {outcome}"] += 1
        spec = case.manifest["spec"]
        if outcome == "accepted" and case.manifest["kind"] == "Rollout":
            combinations.add((next(iter(spec["trafficRouting"])), next(iter(spec["strategy"]))))

    admission()
    for key, n in sorted(tally.items()):
        print(f"  {n:4d}  {key}")
    print(
        f"{sum(tally.values())} manifests; routers and strategies accepted: {sorted(combinations)}"
    )


@pytest.mark.parametrize("regression", fm.regressions(), ids=lambda r: r.name)
def test_fuzz_regression_admission(
    cluster: Cluster, namespace: str, regression: fm.Regression
) -> None:
    for manifest in regression.manifests:
        expect = regression.admission if manifest is regression.manifests[-1] else "accept"
        check(cluster, namespace, manifest, expect, regression.path)
