"""Rollout reconciliation: read what is there, ask ``plan.machine`` what to do, write it.

One kopf daemon per Rollout runs its reconciles one at a time. It sleeps on an
``asyncio.Event`` until something relevant happens (the Rollout changed, one of its
Deployments changed readiness, a ModelVersion of its model appeared or went) or until the
decision's own deadline (a pause ends, the old stable's scale-down is due); a Rollout with
nothing to do costs no API calls. Everything the daemon knows between reconciles is in
the Rollout's status and in kopf's indexes, never in the daemon's locals: a restart at
any point converges.

Execution order of one decision, which keeps DESIGN.md §2's invariants at every instant:
1. create and scale up Deployments (with their Service and PDB);
2. write the route (weights only ever go to replicas that are already Ready);
3. scale down and delete (capacity goes only after the route stopped using it);
4. write status, post events, update the ModelVersions' roles.
Before any write, an existing object of the same name must be ours (owner reference to
this Rollout); a foreign one is left untouched and reported in a condition.

A test-only hook, ``FERRYMAN_TEST_KILL_AT`` (comma-separated point names, each optionally
``:N`` for the N-th hit; read at start, off by default), makes the process exit abruptly at
named points so restart safety is tested at the worst moments: ``after-measurement``
(a round measured, its status not written), ``after-scale-up``, ``after-route-write``,
``before-status-write``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime
from typing import Any

import kopf

from ferryman import metrics
from ferryman.api.common import GROUP, VERSION, ConditionStatus
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion, Role
from ferryman.api.rollout import PLURAL, HistoryCause, Rollout, RolloutPhase
from ferryman.handlers import analysis as analysis_round
from ferryman.handlers import wakeups
from ferryman.kube.client import Conflict, Kube
from ferryman.plan import actions, labels, machine, serving
from ferryman.plan.conditions import set_condition
from ferryman.routing import Router
from ferryman.routing.gatewayapi import GatewayAPIRouter
from ferryman.routing.istio import IstioRouter
from ferryman.routing.service import ServiceRouter

log = logging.getLogger(__name__)

ACTION = "ferryman.dev/action"
ACTION_ID = "ferryman.dev/action-id"


def _kill_points(value: str) -> dict[str, int]:
    """``a,b:3`` -> {a: 1, b: 3}: exit at the first hit of ``a`` or the third of ``b``."""
    points: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        name, _, count = item.partition(":")
        points[name] = int(count or 1)
    return points


KILL_AT = _kill_points(os.environ.get("FERRYMAN_TEST_KILL_AT", ""))
_kill_hits: dict[str, int] = {}
OWNERSHIP = "OwnershipConflict"


def kill_point(name: str) -> None:
    """Exit at once, like a node dying, when a test asked for it at this point."""
    if name not in KILL_AT:
        return
    _kill_hits[name] = _kill_hits.get(name, 0) + 1
    if _kill_hits[name] >= KILL_AT[name]:
        log.warning("FERRYMAN_TEST_KILL_AT: exiting at %s (hit %d)", name, _kill_hits[name])
        os._exit(137)


# --- indexes -------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, MV_PLURAL)
def modelversions_by_model(*, body: kopf.Body, namespace: str | None, **_: Any) -> Any:
    try:
        mv = ModelVersion.model_validate(dict(body))
    except ValueError:
        return None
    return {(namespace, mv.spec.model): mv}


def _owner_rollout(meta: kopf.Meta) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "Rollout" and str(ref.get("apiVersion", "")).startswith(GROUP):
            return str(ref.get("name"))
    return None


@kopf.index("apps", "v1", "deployments", labels={labels.MANAGED_BY: "ferryman"})
def deployments_by_rollout(
    *, body: kopf.Body, meta: kopf.Meta, namespace: str | None, **_: Any
) -> Any:
    rollout = _owner_rollout(meta)
    version = (meta.get("annotations") or {}).get(f"{labels.PREFIX}/version")
    if not rollout or not version:
        return None
    # The same reading `kubectl ferryman undo` makes of the previous stable's Deployment.
    replicas, available = actions.deployment_readiness(body)
    state = machine.DeploymentState(replicas=replicas, available=available)
    return {(namespace, rollout): (meta.get("name"), version, state)}


# --- wake-ups ------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def rollout_changed(
    *, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    wakeups.wake(memo, namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={labels.MANAGED_BY: "ferryman"})
async def deployment_changed(
    *, namespace: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    wakeups.wake(memo, namespace, _owner_rollout(meta))


# --- the daemon ----------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=2.0)
async def rollout_daemon(
    *,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    assert namespace is not None
    wake = wakeups.events(memo).setdefault((namespace, name), asyncio.Event())
    while not stopped:
        wake.clear()
        seen = body.metadata.get("resourceVersion")
        try:
            with metrics.RECONCILE.time():
                delay, wrote = await reconcile(body=body, memo=memo, indexes=kwargs)
        except Conflict:
            # The Rollout changed while we decided: decide again on the new state.
            delay, wrote = 0.0, True
        except Exception:
            log.exception("reconcile of %s/%s failed; retrying in 5s", namespace, name)
            delay, wrote = 5.0, False
        # Never decide twice on the same state: once we wrote status, wait (bounded) until
        # kopf hands us the Rollout as it is after that write.
        if wrote:
            for _ in range(250):
                if stopped or body.metadata.get("resourceVersion") != seen:
                    break
                await asyncio.sleep(0.02)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)
    wakeups.events(memo).pop((namespace, name), None)


def _router(rollout: Rollout) -> Router:
    routing = rollout.spec.traffic_routing
    if routing.gateway_api is not None:
        return GatewayAPIRouter(routing.gateway_api)
    if routing.istio is not None:
        return IstioRouter(routing.istio)
    return ServiceRouter(model=rollout.spec.model, rollout=rollout.metadata.name)


def _pending_action(rollout: Rollout) -> machine.Action | None:
    annotations = rollout.metadata.annotations
    action_id, action = annotations.get(ACTION_ID), annotations.get(ACTION)
    if action and action_id and action_id != rollout.status.handled_action_id:
        return machine.Action(name=action, id=action_id)
    return None


async def reconcile(
    *, body: kopf.Body, memo: kopf.Memo, indexes: dict[str, Any]
) -> tuple[float | None, bool]:
    """One reconcile; returns (seconds until the next one is due, whether status was
    written)."""
    kube: Kube = memo.kube
    rollout = Rollout.model_validate(dict(body))
    ns, name, model = rollout.metadata.namespace, rollout.metadata.name, rollout.spec.model
    now = datetime.now(UTC)
    written = rollout.status.model_dump(by_alias=True, mode="json")

    mvs: list[ModelVersion] = list(indexes["modelversions_by_model"].get((ns, model), []))
    by_version = {mv.spec.version: mv for mv in mvs if mv.status.phase != "Duplicate"}
    records = tuple(
        machine.VersionRecord(
            mv.metadata.name,
            mv.spec.version,
            mv.status.phase == "Duplicate",
            metrics=dict(mv.spec.metrics or {}),
        )
        for mv in mvs
    )
    deployments = {v: st for (_n, v, st) in indexes["deployments_by_rollout"].get((ns, name), [])}
    dep_names = {v: n for (n, v, _st) in indexes["deployments_by_rollout"].get((ns, name), [])}
    others = sorted(
        (r for r in indexes["rollouts_by_model"].get((ns, model), []) if r.rollout != name),
        key=lambda r: (r.created is None, r.created or now, r.rollout),
    )
    mine = rollout.metadata.creation_timestamp or now
    conflict = next(
        (r.rollout for r in others if (r.created or now, r.rollout) < (mine, name)), None
    )
    settings = getattr(memo, "settings", None)
    invalid = analysis_round.problems(rollout, settings)
    due = analysis_round.due(rollout, now) if invalid is None else None
    if due is not None and settings is not None:
        provider = await analysis_round.provider_for(rollout, settings, memo.http, kube)
        rollout.status.analysis = await analysis_round.measure(
            rollout, due, provider, by_version, now
        )
        kill_point("after-measurement")
    observed = machine.Observed(
        versions=records,
        deployments=deployments,
        now=now,
        generation=rollout.metadata.generation,
        action=_pending_action(rollout),
        conflict=conflict,
        invalid=invalid,
    )
    decision = machine.decide(rollout.spec, rollout.status, observed)
    status = decision.status
    problems: list[str] = []
    router = _router(rollout)

    route_written_at: datetime | None = None
    if decision.deployments is not None:
        # 1. create and scale up
        for version, replicas in decision.deployments.items():
            mv = by_version.get(version)
            if mv is None:
                continue
            current = deployments.get(version)
            if current is None or replicas >= current.replicas:
                await _apply_version(kube, rollout, mv, replicas, memo, problems)
        kill_point("after-scale-up")
    if decision.route is not None and not problems:
        # 2. the route
        services = {v: mv.metadata.name for v, mv in by_version.items()}
        obj = router.build(
            name=name,
            namespace=ns,
            route=decision.route,
            services=services,
            port=serving.service_port(rollout),
            metadata={
                "labels": {labels.ROLLOUT: labels.label_value(name), labels.MANAGED_BY: "ferryman"},
                "ownerReferences": [labels.owner_reference(rollout)],
            },
        )
        applied = await _apply_owned(kube, rollout, obj, problems)
        route_written_at = datetime.now(UTC)
        if applied is not None:
            read = router.read(applied, {n: v for v, n in services.items()})
            if read is not None:
                status.weights = machine.weights_of(read)
        kill_point("after-route-write")
        if not isinstance(router, ServiceRouter):
            # With a mesh or Gateway API, a Service named after the Rollout still gives
            # in-cluster clients a stable name; with plain Services the route is that one.
            await _apply_stable_service(kube, rollout, status.stable_version, by_version, problems)
    if rollout.spec.strategy.blue_green is not None and not problems:
        await _sync_preview(kube, rollout, by_version.get(decision.preview or ""), problems)
    if decision.deployments is not None and not problems:
        # 3. scale down and delete
        for version, current in deployments.items():
            target = decision.deployments.get(version)
            mv = by_version.get(version)
            if target is None:
                await _delete_version(kube, ns, dep_names[version])
            elif target < current.replicas and mv is not None:
                await _apply_version(kube, rollout, mv, target, memo, problems)

    # 4. status, events, ModelVersion roles
    status.conditions = (
        set_condition(
            status.conditions,
            type=OWNERSHIP,
            status=ConditionStatus.TRUE if problems else ConditionStatus.FALSE,
            reason="ForeignObject" if problems else "AllOwned",
            message="; ".join(problems) if problems else "every object ferryman writes is its own",
            generation=rollout.metadata.generation,
            now=now,
        )
        if problems or any(c.type == OWNERSHIP for c in status.conditions or [])
        else status.conditions
    )
    if problems:
        status.message = "; ".join(problems)
    kill_point("before-status-write")
    new_status = status.model_dump(by_alias=True, mode="json")
    wrote = new_status != written
    if wrote:
        await kube.patch_status(
            PLURAL, ns, name, new_status, resource_version=rollout.metadata.resource_version
        )
    for event in decision.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    if problems:
        kopf.warn(body, reason=OWNERSHIP, message="; ".join(problems))
    _record_metrics(rollout, status, written, route_written_at, measured=due is not None)
    if status.phase != RolloutPhase.INVALID:
        await _update_roles(
            kube, rollout, status.stable_version, status.candidate_version, mvs, now
        )
    delay = decision.requeue_after
    if machine.analysis_target(rollout.spec, status) is not None:
        wait = analysis_round.next_round_in(status, now)
        wait = 0.0 if wait is None else wait
        delay = wait if delay is None else min(delay, wait)
    return delay, wrote


def _record_metrics(
    rollout: Rollout,
    status: Any,
    written: dict[str, Any],
    route_written_at: datetime | None,
    *,
    measured: bool,
) -> None:
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    metrics.observe_phase(ns, name, status.phase)
    if status.weights is not None:
        metrics.WEIGHT.labels(ns, name, "stable").set(status.weights.stable)
        metrics.WEIGHT.labels(ns, name, "candidate").set(status.weights.candidate)
        metrics.WEIGHT.labels(ns, name, "mirror").set(status.weights.mirror_percent)
    seen = [datetime.fromisoformat(h["at"]) for h in written.get("history") or []]
    last = max(seen) if seen else None
    fresh = [h for h in status.history or [] if last is None or h.at > last]
    for entry in fresh:
        metrics.ended(ns, name, entry)
        if entry.cause in (HistoryCause.ANALYSIS, HistoryCause.BAKE_ANALYSIS):
            decided = [
                m
                for m in (status.analysis.measurements if status.analysis else None) or []
                if m.verdict == "Failed"
            ]
            if route_written_at is not None and decided:
                metrics.ROLLBACK_DURATION.observe(
                    max((route_written_at - decided[-1].at).total_seconds(), 0.0)
                )
    if measured and status.analysis and rollout.spec.analysis:
        latest = (status.analysis.measurements or [])[-len(rollout.spec.analysis.metrics) :]
        for m in latest:
            metrics.MEASUREMENTS.labels(ns, name, m.metric, m.verdict.value).inc()
            if m.value is not None:
                metrics.VALUE.labels(ns, name, m.metric).set(m.value)


async def _apply_owned(
    kube: Kube, rollout: Rollout, obj: dict[str, Any], problems: list[str]
) -> dict[str, Any] | None:
    meta = obj["metadata"]
    existing = await kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    if existing is not None and not labels.is_owned_by(existing, rollout):
        problems.append(
            f"{obj['kind']} {meta['name']} exists and is not owned by this Rollout; left untouched"
        )
        return None
    return await kube.apply(obj)


async def _apply_version(
    kube: Kube,
    rollout: Rollout,
    mv: ModelVersion,
    replicas: int,
    memo: kopf.Memo,
    problems: list[str],
) -> None:
    settings = getattr(memo, "settings", None)
    init_image = settings.storage_initializer_image if settings is not None else None
    for obj in (
        serving.service(mv, rollout),
        serving.pod_disruption_budget(mv, rollout),
        serving.deployment(mv, rollout, replicas=replicas, init_image=init_image),
    ):
        await _apply_owned(kube, rollout, obj, problems)


async def _apply_stable_service(
    kube: Kube,
    rollout: Rollout,
    stable: str | None,
    by_version: dict[str, ModelVersion],
    problems: list[str],
) -> None:
    """The Service named after the Rollout always selects the stable version's pods."""
    mv = by_version.get(stable or "")
    if mv is None:
        return
    svc = serving.service(mv, rollout)
    svc["metadata"]["name"] = rollout.metadata.name
    svc["metadata"]["annotations"] = {f"{labels.PREFIX}/stable-version": mv.spec.version}
    await _apply_owned(kube, rollout, svc, problems)


async def _sync_preview(
    kube: Kube, rollout: Rollout, mv: ModelVersion | None, problems: list[str]
) -> None:
    """Blue-green: ``<rollout>-preview`` selects the candidate while there is one."""
    name = f"{rollout.metadata.name}-preview"
    if mv is None:
        existing = await kube.get("v1", "Service", rollout.metadata.namespace, name)
        if existing is not None and labels.is_owned_by(existing, rollout):
            await kube.delete("v1", "Service", rollout.metadata.namespace, name)
        return
    svc = serving.service(mv, rollout)
    svc["metadata"]["name"] = name
    svc["metadata"]["annotations"] = {f"{labels.PREFIX}/preview-version": mv.spec.version}
    await _apply_owned(kube, rollout, svc, problems)


async def _delete_version(kube: Kube, namespace: str, name: str) -> None:
    await kube.delete("apps/v1", "Deployment", namespace, name)
    await kube.delete("v1", "Service", namespace, name)
    await kube.delete("policy/v1", "PodDisruptionBudget", namespace, name)


async def _update_roles(
    kube: Kube,
    rollout: Rollout,
    stable: str | None,
    candidate: str | None,
    mvs: list[ModelVersion],
    now: datetime,
) -> None:
    """Keep each ModelVersion's role, rollout, phase and serving times current."""
    for mv in mvs:
        if mv.status.phase == "Duplicate":
            continue
        role = (
            Role.STABLE
            if mv.spec.version == stable
            else Role.CANDIDATE
            if mv.spec.version == candidate
            else Role.NONE
        )
        serving_now = role != Role.NONE
        patch: dict[str, Any] = {}
        if mv.status.role != role:
            patch["role"] = role.value
        if serving_now and mv.status.rollout != rollout.metadata.name:
            patch["rollout"] = rollout.metadata.name
        if not serving_now and mv.status.rollout:
            patch["rollout"] = None
        if serving_now and mv.status.phase != "Serving":
            patch["phase"] = "Serving"
            patch["servedFrom"] = now.isoformat()
            patch["servedUntil"] = None
        if not serving_now and mv.status.phase == "Serving":
            patch["phase"] = "Retired"
            patch["servedUntil"] = now.isoformat()
        if patch:
            await kube.patch_status(MV_PLURAL, mv.metadata.namespace, mv.metadata.name, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def rollout_deleted(*, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """The Rollout's children go with it (owner references); its ModelVersions stop
    being served, so their roles are cleared and their deletion no longer waits."""
    rollout = Rollout.model_validate(dict(body))
    ns, model = rollout.metadata.namespace, rollout.spec.model
    mvs = [
        mv
        for mv in kwargs["modelversions_by_model"].get((ns, model), [])
        if mv.status.rollout == rollout.metadata.name
    ]
    await _update_roles(memo.kube, rollout, None, None, mvs, datetime.now(UTC))
    metrics.forget(ns, rollout.metadata.name)
