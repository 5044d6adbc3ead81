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
this Rollout); a foreign one is left untouched and reported in a condition. A write the
API server refuses (an invalid object, a forbidden write: ``kube.ApplyRejected``), or a
scale-up that fails otherwise, holds back the scale-down but never the route write (the
decision gives weight only to replicas it observed Ready, and a rollback's route write
must never wait), and is reported in the ``ApplyFailed`` condition, the status message
and a Warning Event; it is tried again after ``APPLY_FAILED_RETRY`` seconds, at the next
analysis round or when something changes, never in a tight loop.
A Rollout or target ModelVersion whose name cannot name ferryman's objects (created before
the CRDs refused such names) makes the Rollout ``Invalid`` before anything is written.

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
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import kopf

from ferryman import metrics
from ferryman.api import names
from ferryman.api.common import GROUP, VERSION, ConditionStatus, clip, event_message
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion, Role
from ferryman.api.rollout import (
    MAX_METRICS,
    PLURAL,
    HistoryCause,
    Rollout,
    RolloutPhase,
    action_key,
)
from ferryman.errors import describe
from ferryman.handlers import analysis as analysis_round
from ferryman.handlers import wakeups
from ferryman.kube.client import ApplyRejected, Conflict, Kube, Rejected
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
APPLY_FAILED = "ApplyFailed"
APPLY_FAILED_RETRY = 60.0  # seconds until a refused write is tried again unprompted
MESSAGE_MAX = 2048  # status.message and condition messages (api/)


class ApplyFailure(str):
    """A problem that is a write the API server refused (not a foreign object)."""


def retry_delay(failures: int) -> float:
    """Seconds before retrying after ``failures`` consecutive failed reconciles:
    5, 10, 20, capped at 30 (a fault that persists is reported, not hammered, and a
    rollback waiting behind it is at most 30 s late once the fault clears)."""
    return float(min(5 * 2 ** max(failures - 1, 0), 30))


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


# The routes ferryman writes (and, with plain Services, the live Service): a route that is
# deleted or edited by hand wakes its Rollout, which writes it again. kopf serves these
# only where their CRDs exist (it warns about the others and skips them).
@kopf.on.event(
    "gateway.networking.k8s.io", "v1", "httproutes", labels={labels.MANAGED_BY: "ferryman"}
)
@kopf.on.event(
    "networking.istio.io", "v1", "virtualservices", labels={labels.MANAGED_BY: "ferryman"}
)
@kopf.on.event("", "v1", "services", labels={labels.MANAGED_BY: "ferryman"})
async def route_changed(
    *, namespace: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    wakeups.wake(memo, namespace, _owner_rollout(meta))


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
    failures = 0  # consecutive failed reconciles: only paces the retries
    while not stopped:
        wake.clear()
        seen = body.metadata.get("resourceVersion")
        try:
            with metrics.RECONCILE.time():
                delay, wrote = await reconcile(body=body, memo=memo, indexes=kwargs)
            failures = 0
        except Conflict:
            # The Rollout changed while we decided: decide again on the new state.
            delay, wrote = 0.0, True
        except Rejected as e:
            # A refused write: a status write was reported (event, condition); back off.
            failures += 1
            delay, wrote = retry_delay(failures), True
            log.warning("%s/%s: %s; retrying in %gs", namespace, name, e, delay)
        except Exception as e:
            failures += 1
            delay, wrote = retry_delay(failures), False
            log.exception("reconcile of %s/%s failed; retrying in %gs", namespace, name, delay)
            # Never a silent retry loop: the user sees why in events (kubectl describe).
            kopf.warn(
                body,
                reason="ReconcileFailed",
                message=event_message(f"{describe(e)}; retrying in {delay:g}s"),
            )
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
    if action and action_id and action_key(action_id) != rollout.status.handled_action_id:
        return machine.Action(name=action, id=action_key(action_id))
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
    invalid = _name_problem(rollout, records, by_version) or analysis_round.problems(
        rollout, settings
    )
    due = analysis_round.due(rollout, now) if invalid is None else None
    if due is not None and settings is not None:
        try:
            provider = await analysis_round.provider_for(rollout, settings, memo.http, kube)
            rollout.status.analysis = await analysis_round.measure(
                rollout, due, provider, by_version, now
            )
        except Exception as e:  # never let measuring stop a decision (abort, rollback)
            log.warning("%s/%s: analysis round failed: %s", ns, name, describe(e))
            rollout.status.analysis = analysis_round.error_round(rollout, describe(e), now)
        kill_point("after-measurement")

    # The route as it is: ours (its weights are what status reports) or someone else's
    # (then nothing may advance, promote or scale down on the strength of it).
    router = _router(rollout)
    services = {v: mv.metadata.name for v, mv in by_version.items()}
    reverse = {n: v for v, n in services.items()}
    existing_route = await kube.get(router.api_version, router.kind, ns, name)
    foreign_route = existing_route is not None and not labels.is_owned_by(existing_route, rollout)
    blocked = (
        f"{router.kind} {name} exists and is not owned by this Rollout: ferryman cannot "
        "route traffic, so nothing advances, promotes or scales down until it is removed "
        "or renamed"
        if foreign_route
        else None
    )
    observed = machine.Observed(
        versions=records,
        deployments=deployments,
        now=now,
        generation=rollout.metadata.generation,
        action=_pending_action(rollout),
        conflict=conflict,
        invalid=invalid,
        blocked=blocked,
        # Plain Services: which pods the live Service selects now, so a decision never
        # drops Ready capacity behind it.
        route=(
            router.read(existing_route, reverse)
            if machine.ratio_mode(rollout.spec) and existing_route is not None and not foreign_route
            else None
        ),
    )
    decision = machine.decide(rollout.spec, rollout.status, observed)
    status = decision.status
    problems: list[str] = [f"blocked: {blocked}"] if blocked else []
    if existing_route is not None and not foreign_route:
        read = router.read(existing_route, reverse)
        if read is not None:
            status.weights = _observed_weights(rollout, read, deployments)
    elif foreign_route or existing_route is None:
        # No route of ours carries traffic: status claims none.
        status.weights = None

    route_written_at: datetime | None = None
    if decision.deployments is not None:
        # 1. create and scale up
        for version, replicas in decision.deployments.items():
            mv = by_version.get(version)
            if mv is None:
                continue
            current = deployments.get(version)
            if current is None or replicas >= current.replicas:
                try:
                    await _apply_version(kube, rollout, mv, replicas, memo, problems)
                except Exception as e:  # a failing webhook, a timeout: reported below
                    log.warning("%s/%s: scale-up of %s failed: %s", ns, name, version, e)
                    problems.append(ApplyFailure(f"scale-up of {version} failed: {describe(e)}"))
        kill_point("after-scale-up")
    route_ok = not foreign_route
    if decision.route is not None and not foreign_route:
        # 2. the route. It is written even when a scale-up above failed: the decision gives
        # weight only to replicas it observed Ready, so the route never needs this
        # reconcile's scale-up, and a rollback's route write must never wait for one.
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
        applied = await _apply_owned(kube, rollout, obj, problems, existing=existing_route)
        route_written_at = datetime.now(UTC)
        route_ok = applied is not None
        if applied is not None:
            read = router.read(applied, reverse)
            status.weights = _observed_weights(rollout, read, deployments)
        kill_point("after-route-write")
        if not isinstance(router, ServiceRouter):
            # With a mesh or Gateway API, a Service named after the Rollout still gives
            # in-cluster clients a stable name; with plain Services the route is that one.
            await _apply_stable_service(kube, rollout, status.stable_version, by_version, problems)
    elif decision.route is not None:
        route_ok = False
    if rollout.spec.strategy.blue_green is not None and not problems and route_ok:
        await _sync_preview(kube, rollout, by_version.get(decision.preview or ""), problems)
    if decision.deployments is not None and not problems and route_ok:
        # 3. scale down and delete: only once the route no longer needs the capacity
        for version, current in deployments.items():
            target = decision.deployments.get(version)
            mv = by_version.get(version)
            if target is None:
                await _delete_version(kube, ns, dep_names[version])
            elif target < current.replicas and mv is not None:
                await _apply_version(kube, rollout, mv, target, memo, problems)
    events = decision.events
    if decision.route is not None and not route_ok:
        # The decision's route was not written, so the decision did not happen: keep the
        # status it was made from (with this round's analysis and the weights as they
        # are) and say why, rather than claim a weight or a promotion the route never got.
        kept = rollout.status.model_copy(deep=True)
        kept.weights, kept.observed_generation = status.weights, status.observed_generation
        status, events = kept, []

    # 4. status, events, ModelVersion roles
    failures = [p for p in problems if isinstance(p, ApplyFailure)]
    foreign = [p for p in problems if not isinstance(p, ApplyFailure)]
    status.conditions = (
        set_condition(
            status.conditions,
            type=OWNERSHIP,
            status=ConditionStatus.TRUE if foreign else ConditionStatus.FALSE,
            reason="ForeignObject" if foreign else "AllOwned",
            message="; ".join(foreign) if foreign else "every object ferryman writes is its own",
            generation=rollout.metadata.generation,
            now=now,
        )
        if foreign or any(c.type == OWNERSHIP for c in status.conditions or [])
        else status.conditions
    )
    new_failure = _set_apply_failed(rollout, status, failures, now)
    if problems:
        status.message = clip("; ".join(problems), MESSAGE_MAX)
    if any(c.type == STATUS_WRITE for c in status.conditions or []):
        status.conditions = _status_write_condition(rollout, status, None, now)
    kill_point("before-status-write")
    new_status = status.model_dump(by_alias=True, mode="json")
    wrote = new_status != written
    refused: Rejected | None = None
    if wrote:
        refused = await _write_status(kube, body, rollout, status, new_status, now)
        wrote = refused is None
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event_message(event.message))
    if foreign:
        kopf.warn(body, reason=OWNERSHIP, message=event_message("; ".join(foreign)))
    if new_failure:
        kopf.warn(body, reason=APPLY_FAILED, message=event_message(new_failure))
    _record_metrics(rollout, status, written, route_written_at, measured=due is not None)
    if status.phase != RolloutPhase.INVALID:
        await _update_roles(
            kube, rollout, status.stable_version, status.candidate_version, mvs, now
        )
    delay = decision.requeue_after
    if failures:
        # Refused writes are not retried in a tight loop ...
        delay = max(delay or 0.0, APPLY_FAILED_RETRY)
    if machine.analysis_target(rollout.spec, status) is not None:
        # ... but analysis never waits for them: a failing candidate is still rolled back.
        wait = analysis_round.next_round_in(status, now)
        wait = 0.0 if wait is None else wait
        delay = wait if delay is None else min(delay, wait)
    if refused is not None:
        # Events and metrics of the decision are out (the Events keep its record); now
        # let the daemon retry the status write with a backoff.
        raise refused
    return delay, wrote


STATUS_WRITE = "StatusWriteFailed"
# What a status write that the API server refused falls back to: the fields that keep
# traffic decisions safe on the next reconcile (a rollback stays rolled back), without
# the parts that can grow (history, analysis measurements).
ESSENTIAL_STATUS = (
    "phase",
    "pause",
    "stableVersion",
    "candidateVersion",
    "previousStableVersion",
    "currentStep",
    "canaryWeight",
    "stepStartedAt",
    "stageSince",
    "scaleDownAt",
    "weights",
    "rolledBackVersions",
    "handledActionId",
    "lastAction",
    "observedGeneration",
    "planHash",
    "analysisHash",
)


def _status_write_condition(
    rollout: Rollout, status: Any, failure: str | None, now: datetime
) -> Any:
    return set_condition(
        status.conditions,
        type=STATUS_WRITE,
        status=ConditionStatus.TRUE if failure else ConditionStatus.FALSE,
        reason="Rejected" if failure else "Written",
        message=failure or "the last status write succeeded",
        generation=rollout.metadata.generation,
        now=now,
    )


async def _write_status(
    kube: Kube,
    body: kopf.Body,
    rollout: Rollout,
    status: Any,
    new_status: dict[str, Any],
    now: datetime,
) -> Rejected | None:
    """Write the decision's status. The route was written before this, so a refused
    status write never holds back a rollback's traffic move; the refusal is reported
    (Warning Event ``StatusWriteFailed`` and, if the API server takes it, the condition
    of the same name with the essential fields of the decision), then re-raised so the
    daemon retries with a backoff. Returns the refusal, or None when status was written."""
    ns, name = rollout.metadata.namespace, rollout.metadata.name
    try:
        await kube.patch_status(
            PLURAL, ns, name, new_status, resource_version=rollout.metadata.resource_version
        )
        return None
    except Conflict:
        raise
    except Exception as error:  # refused (4xx), or failed (5xx, timeout): same fallback
        e = (
            error
            if isinstance(error, Rejected)
            else Rejected(f"status of {PLURAL}/{ns}/{name}", 0, describe(error))
        )
        failure = clip(f"status write refused by the API server: {e}", 1024)
        kopf.warn(body, reason=STATUS_WRITE, message=event_message(failure))
        status.conditions = _status_write_condition(rollout, status, failure, now)
        dumped = status.model_dump(by_alias=True, mode="json")
        essential = {k: dumped.get(k) for k in ESSENTIAL_STATUS}
        essential["conditions"] = dumped.get("conditions")
        essential["message"] = clip(f"{status.message or ''} ({failure})", 512)
        analysis = dumped.get("analysis")
        if analysis:
            # Counters, evidence clock and schedule, with the latest round only: without
            # them the next reconcile would count from stale values.
            analysis["measurements"] = (analysis.get("measurements") or [])[-MAX_METRICS:]
            essential["analysis"] = analysis
        try:
            await kube.patch_status(
                PLURAL, ns, name, essential, resource_version=rollout.metadata.resource_version
            )
        except Exception as again:
            log.error("essential status of %s/%s failed too: %s", ns, name, describe(again))
        return e


def _name_problem(
    rollout: Rollout,
    records: tuple[machine.VersionRecord, ...],
    by_version: dict[str, ModelVersion],
) -> str | None:
    """Why the Rollout's name, or its target ModelVersion's, cannot name the objects
    ferryman derives from it (``api.names``); None when both can. The CRDs refuse such
    names at creation, so this finds only objects created before they did."""
    found = names.problem(names.ROLLOUT, rollout.metadata.name)
    if found:
        return found
    target, _ = machine.resolve_target(
        rollout.spec,
        records,
        list(rollout.status.rolled_back_versions or []),
        rollout.status.stable_version,
    )
    mv = by_version.get(target or "")
    found = names.problem(names.MODEL_VERSION, mv.metadata.name) if mv else None
    if mv is not None and found:
        return f"ModelVersion {mv.metadata.name} cannot be served: {found}"
    # A served version's Service is named after its ModelVersion: it must not be one of
    # the Services this Rollout names after itself (the live/stable one, the preview).
    reserved = names.rollout_services(rollout.metadata.name)
    status = rollout.status
    for version in (target, status.stable_version, status.candidate_version):
        served = by_version.get(version or "")
        if served is not None and served.metadata.name in reserved:
            return (
                f"ModelVersion {served.metadata.name} (version {served.spec.version}) cannot "
                f"be served by Rollout {rollout.metadata.name}: its Service would be the "
                "Rollout's own Service of that name; register the version under another name"
            )
    return None


def _set_apply_failed(
    rollout: Rollout, status: Any, failures: Sequence[str], now: datetime
) -> str | None:
    """Set the ``ApplyFailed`` condition (True with the refused writes, False once a
    reconcile has none); returns the message of a failure not reported before, for the
    Warning Event (so a write refused again and again posts one Event, not one a minute).
    """
    old = next((c for c in status.conditions or [] if c.type == APPLY_FAILED), None)
    if not failures and old is None:
        return None
    message = clip("; ".join(failures), MESSAGE_MAX) if failures else "every write was accepted"
    status.conditions = set_condition(
        status.conditions,
        type=APPLY_FAILED,
        status=ConditionStatus.TRUE if failures else ConditionStatus.FALSE,
        reason="Refused" if failures else "Applied",
        message=message,
        generation=rollout.metadata.generation,
        now=now,
    )
    reported = old is not None and old.status == ConditionStatus.TRUE and old.message == message
    return message if failures and not reported else None


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
    metrics.observe_pause(ns, name, status.pause)
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


def _observed_weights(
    rollout: Rollout, read: machine.Route | None, deployments: dict[str, machine.DeploymentState]
) -> Any:
    """Weights as the route really carries them: with plain Services the share of Ready
    pods behind the live Service, with a mesh or Gateway API the route's weights; None
    without a route of ours."""
    if read is None:
        return None
    if machine.ratio_mode(rollout.spec):
        return machine.ratio_weights(read, deployments)
    return machine.weights_of(read)


async def _apply_owned(
    kube: Kube,
    rollout: Rollout,
    obj: dict[str, Any],
    problems: list[str],
    *,
    existing: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Apply ``obj`` if no object of that name exists or it is this Rollout's own; else
    leave it untouched, add the problem and return None. ``existing``: the object as just
    read, when the caller has it (saves a GET)."""
    meta = obj["metadata"]
    if existing is None:
        existing = await kube.get(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    if existing is not None and not labels.is_owned_by(existing, rollout):
        problems.append(
            f"{obj['kind']} {meta['name']} exists and is not owned by this Rollout; left untouched"
        )
        return None
    try:
        return await kube.apply(obj)
    except ApplyRejected as e:
        log.warning("%s/%s: %s", rollout.metadata.namespace, rollout.metadata.name, e)
        problems.append(
            ApplyFailure(
                f"the API server refused {e.kind} {e.name} (HTTP {e.status}): "
                + clip(e.reason, 512)
            )
        )
        return None


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
    before = len(problems)
    for obj in (
        serving.service(mv, rollout),
        serving.pod_disruption_budget(mv, rollout),
        serving.deployment(mv, rollout, replicas=replicas, init_image=init_image),
    ):
        await _apply_owned(kube, rollout, obj, problems)
        if any(isinstance(p, ApplyFailure) for p in problems[before:]):
            return  # no pods behind a Service or budget that could not be written


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
    name = names.preview_service(rollout.metadata.name)
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
