"""The Rollout's scale subresource, seen from ferryman: what ``status.replicas`` and
``status.selector`` say, and the replica count a candidate's weight is held against while
an autoscaler moves ``spec.replicas``.

An HPA (kube-controller-manager's ``horizontal`` controller) reads the scale subresource:
``spec.replicas`` is its current count, ``status.selector`` the pods whose metrics it
averages (parsed with the labels package's string syntax: ``k=v`` and ``k in (a,b)``), and
``status.replicas`` the pod count it divides an object/external ``AverageValue`` by. So the
selector names the pods that carry live traffic and nothing else (an idle blue-green
preview or a warm previous stable would lower the average), and ``status.replicas``
counts their Ready pods. ferryman only reads ``spec.replicas`` (docs/autoscaling.md).

Its own module because the executor (which knows the route as read back and the Rollout's
name) and the state machine (which sizes the candidate) both need these rules, and they
are pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from ferryman.api.rollout import RolloutStatus
from ferryman.plan import labels
from ferryman.plan.decision import DeploymentState


def serving_versions(status: RolloutStatus) -> list[str]:
    """The versions carrying live traffic per ``status.weights`` (the route as read
    back): the stable with a stable weight above 0, the candidate with a candidate weight
    above 0. Without a route (none written yet), the stable version alone, if any.
    Mirrored traffic (a shadow, a blue-green preview) is not live traffic."""
    weights, stable, candidate = status.weights, status.stable_version, status.candidate_version
    if weights is None:
        return [stable] if stable else []
    out = []
    if stable and weights.stable > 0:
        out.append(stable)
    if candidate and candidate != stable and weights.candidate > 0:
        out.append(candidate)
    return out


def selector(rollout_name: str, versions: list[str]) -> str:
    """The label selector, in the string form ``labels.Parse`` reads, matching the pods of
    ``versions`` of Rollout ``rollout_name`` (every pod of the Rollout when ``versions``
    is empty): ``ferryman.dev/rollout=fraud,ferryman.dev/version in (1.0.0,1.1.0)``.
    Values go through ``labels.label_value`` exactly as the pods' labels do; versions are
    sorted so the selector does not change with their order."""
    out = f"{labels.ROLLOUT}={labels.label_value(rollout_name)}"
    if versions:
        values = ",".join(sorted({labels.label_value(v) for v in versions}))
        out += f",{labels.VERSION} in ({values})"
    return out


def set_scale_status(
    status: RolloutStatus, rollout_name: str, deployments: Mapping[str, DeploymentState]
) -> None:
    """Set ``status.replicas`` (Ready pods of the serving versions, from ``deployments``
    as observed, by version) and ``status.selector`` for them, in place."""
    versions = serving_versions(status)
    counted = versions or list(deployments)
    status.replicas = sum(deployments[v].available for v in counted if v in deployments)
    status.selector = selector(rollout_name, versions)


def reference_replicas(replicas: int, capacity: int | None, *, from_zero: int) -> int:
    """The replica count the candidate's Ready replicas are held against for the weight
    (or preview) it already has: ``spec.replicas`` (``replicas``), or less while it grows
    past ``capacity`` (``status.capacityReplicas``, the count that weight was last carried
    at). A weight the candidate carried at the smaller count stays: the stable's Ready
    replicas did not grow either, so both versions share the new load in the same
    proportion until the new replicas are Ready. A shrinking count applies at once.

    ``capacity`` 0 says the weight was last "carried" at ``spec.replicas`` 0, by no pod
    at all: back from zero nothing has carried it yet, so it is held against
    ``from_zero`` instead (at most ``replicas``): the stable's Ready replicas for a
    canary's weight (kept while no version has a Ready pod, as at 0; gone from a
    candidate without Ready pods once the stable has some), ``replicas`` for a preview
    (Ready again only at its new size). A reference of 0 holds any weight, so it is never
    taken from a count that no Ready pod backs."""
    if capacity is None:
        return replicas
    if capacity == 0:
        return min(replicas, from_zero)
    return min(replicas, capacity)


def next_capacity(replicas: int, capacity: int | None, available: int, need: int) -> int:
    """``status.capacityReplicas`` after this decision: ``replicas`` once the candidate's
    ``available`` Ready replicas reach ``need`` (what its weight or preview needs at
    ``replicas``), else the count it was last carried at, or ``replicas`` if that is
    less (0 stays 0 until the candidate is Ready again after a scale to zero)."""
    if available >= need:
        return replicas
    return replicas if capacity is None else min(replicas, capacity)
