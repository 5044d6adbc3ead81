"""Rollout reconciliation: read what is there, ask ``plan.machine`` what to do, have
``handlers.executor`` write it.

One kopf daemon per Rollout runs its reconciles one at a time. It sleeps on an
``asyncio.Event`` until something relevant happens (the Rollout changed, one of its
Deployments changed readiness, a ModelVersion of its model appeared or went) or until the
decision's own deadline (a pause ends, the old stable's scale-down is due); a Rollout with
nothing to do costs no API calls. Everything the daemon knows between reconciles is in
the Rollout's status and in kopf's indexes, never in the daemon's locals: a restart at
any point converges.

One reconcile: observe (the indexes, the route as it is), analyse (a due measurement
round), decide (``plan.machine.decide``), execute (``handlers.executor``: scale up, route,
Services, scale down, delete, status, in that order, with the ownership checks), then post
the Events, record the metrics (``metrics.record_reconcile``) and update the ModelVersions'
roles, serving times and last outcomes (``plan.roles`` decides, ``handlers.roles`` writes).
A Rollout or target ModelVersion whose name cannot name ferryman's objects (created before
the CRDs refused such names) makes the Rollout ``Invalid`` before anything is written.
The test-only kill points are in ``handlers.killpoints``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import kopf

from ferryman import metrics
from ferryman.api import names
from ferryman.api.annotations import ACTION, ACTION_ID
from ferryman.api.common import GROUP, VERSION, event_message
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import PLURAL, Rollout, action_key
from ferryman.errors import describe
from ferryman.handlers import analysis as analysis_round
from ferryman.handlers import (
    approvals,
    companions,
    executor,
    experiment_round,
    holds,
    killpoints,
    namespaces,
    orphans,
    pods,
    retention,
    roles,
    shared_routes,
    terminating,
    validity,
    wakeups,
)
from ferryman.handlers import observed as indexed
from ferryman.handlers.context import context
from ferryman.kube.client import Conflict, Rejected
from ferryman.plan import actions, labels, machine
from ferryman.plan.decision import Action, DeploymentState, Observed, VersionRecord
from ferryman.plan.evidence import analysis_target
from ferryman.routing import Watch, router_for, watched

log = logging.getLogger(__name__)
KEEP_ATTEMPTS = 3  # tries of KeepStable's orphaning before a deletion goes on without it


def retry_delay(failures: int) -> float:
    """Seconds before retrying after ``failures`` consecutive failed reconciles:
    5, 10, 20, capped at 30 (a fault that persists is reported, not hammered, and a
    rollback waiting behind it is at most 30 s late once the fault clears)."""
    return float(min(5 * 2 ** max(failures - 1, 0), 30))


# --- indexes -------------------------------------------------------------------------


@kopf.index(GROUP, VERSION, MV_PLURAL)
def modelversions_by_model(*, body: kopf.Body, namespace: str | None, **_: Any) -> Any:
    try:
        mv = ModelVersion.model_validate(dict(body))
    except ValueError:
        return {}
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
        return {}
    # The same reading `kubectl ferryman undo` makes of the previous stable's Deployment.
    replicas, available = actions.deployment_readiness(body)
    state = DeploymentState(replicas=replicas, available=available)
    return {(namespace, rollout): (meta.get("name"), version, state)}


# --- wake-ups ------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, PLURAL)
async def rollout_changed(
    *, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    wakeups.wake(memo, namespace, name)


async def route_changed(
    *, namespace: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any
) -> None:
    wakeups.wake(memo, namespace, _owner_rollout(meta))


# Every indexed resource (``indexed.INDEXES``: the Services and budgets ferryman writes,
# and the route objects of every registered router; with plain Services the route is the
# live Service) but Deployments (below), and every registered router's route objects
# (``routing.watched()``): an object deleted or edited by hand wakes its Rollout, which
# writes it again (a reconcile that reads from an index must be woken by each change of
# what it reads). kopf serves these only where their CRDs exist (it warns about the
# others and skips them).
_DEPLOYMENTS = Watch("apps", "v1", "deployments")
_WOKEN = [i.watch for i in indexed.INDEXES if i.watch != _DEPLOYMENTS]
for _watch in [*_WOKEN, *(w for w in watched() if w not in _WOKEN and w != _DEPLOYMENTS)]:
    kopf.on.event(
        _watch.group, _watch.version, _watch.plural, labels={labels.MANAGED_BY: "ferryman"}
    )(route_changed)


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
            namespaces.post(
                body,
                type="Warning",
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
    context(memo).holds.pop((namespace, name), None)


def _pending_action(rollout: Rollout) -> Action | None:
    annotations = rollout.metadata.annotations
    action_id, action = annotations.get(ACTION_ID), annotations.get(ACTION)
    if action and action_id and action_key(action_id) != rollout.status.handled_action_id:
        return Action(name=action, id=action_key(action_id))
    return None


async def reconcile(
    *, body: kopf.Body, memo: kopf.Memo, indexes: dict[str, Any]
) -> tuple[float | None, bool]:
    """One reconcile; returns (seconds until the next one is due, whether status was
    written)."""
    ctx = context(memo)
    kube = ctx.kube
    rollout = Rollout.model_validate(dict(body))
    if rollout.metadata.deletion_timestamp is not None:
        # Being deleted: the finalizer (``rollout_deleted``) decides what stays; a
        # reconcile now could move traffic back to a candidate or re-adopt an orphan.
        return None, False
    wait = terminating.held_back(rollout.metadata.namespace, rollout.metadata.creation_timestamp)
    if wait is not None:  # no write would be accepted: again when the mark lapses
        return wait, False
    ns, name, model = rollout.metadata.namespace, rollout.metadata.name, rollout.spec.model
    now = datetime.now(UTC)
    written = rollout.status.model_dump(by_alias=True, mode="json")

    mvs: list[ModelVersion] = list(indexes["modelversions_by_model"].get((ns, model), []))
    by_version = {mv.spec.version: mv for mv in mvs if mv.status.phase != "Duplicate"}
    records = tuple(
        VersionRecord(
            mv.metadata.name,
            mv.spec.version,
            mv.status.phase == "Duplicate",
            metrics=dict(mv.spec.metrics or {}),
            created=mv.metadata.creation_timestamp,
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
    settings = ctx.settings
    invalid = validity.name_problem(rollout, records, by_version) or analysis_round.problems(
        rollout, settings
    )
    due = analysis_round.due(rollout, now) if invalid is None else None
    if due is not None and settings is not None:
        try:
            provider = await analysis_round.provider_for(rollout, settings, ctx.http, kube)
            rollout.status.analysis = await analysis_round.measure(
                rollout, due, provider, by_version, now
            )
            await experiment_round.look(rollout, due, provider, by_version, now)
        except Exception as e:  # never let measuring stop a decision (abort, rollback)
            log.warning("%s/%s: analysis round failed: %s", ns, name, describe(e))
            rollout.status.analysis = analysis_round.error_round(rollout, describe(e), now)
        killpoints.kill_point("after-measurement")

    # The route as it is: ours (its weights are what status reports) or someone else's
    # (then nothing may advance, promote or scale down on the strength of it).
    router = router_for(rollout.spec)
    services = {v: mv.metadata.name for v, mv in by_version.items()}
    reverse = {n: v for v, n in services.items()}
    # ferryman's objects as kopf's indexes hold them, the trusted entries only
    # (``handlers.observed``); the route is read when its index has no such entry.
    known = indexed.lookup(
        indexes,
        ns,
        [
            *services.values(),
            *dep_names.values(),
            *names.rollout_services(name),
            *companions.names(router, name),
        ],
        ctx.ledger,
    )
    # Orphans a deleted Rollout of this name left serving (``handlers.orphans``): first
    # their stable version becomes this Rollout's, then they are adopted, each in a
    # reconcile of its own (the next one decides on indexes that hold them as ours).
    found = orphans.candidates(
        indexes, rollout, [*services.values(), *names.rollout_services(name)], ctx.ledger
    )
    if found:
        seeded = await orphans.seed_status(kube, rollout, found, services, ctx.ledger)
        if seeded is not None:
            await kube.patch_status(
                PLURAL, ns, name, seeded, resource_version=rollout.metadata.resource_version
            )
            namespaces.post(
                body, type="Normal", reason="Adopted", message=event_message(seeded["message"])
            )
            return 0.0, True
        if await orphans.adopt(kube, rollout, found, ctx.ledger):
            return holds.after(ctx.holds, (ns, name), True, None), False
    # The route as it is (``handlers.shared_routes``): ours, a shared one, or someone else's.
    seen_route = await shared_routes.observe(
        kube, ctx.ledger, router, rollout, known, time.monotonic()
    )
    existing_route, foreign_route = seen_route.route, seen_route.foreign
    # A companion route (east-west) of someone else's blocks too (``handlers.companions``).
    taken = await companions.blocked(
        kube, ctx.ledger, router, rollout, known, time.monotonic(), by_version.values()
    )
    observed = Observed(
        versions=records,
        deployments=deployments,
        now=now,
        capabilities=router.capabilities,
        generation=rollout.metadata.generation,
        action=_pending_action(rollout),
        conflict=conflict,
        invalid=invalid,
        blocked=seen_route.blocked or taken,
        pod_failures=pods.failures_by_version(indexes, ns, name),
        approvals=approvals.of(indexes, ns, name),
        created=rollout.metadata.creation_timestamp,
        # Weights by replica ratio (plain Services): which pods the live Service selects
        # now, so a decision never drops Ready capacity behind it.
        route=(
            router.read(existing_route, reverse)
            if router.capabilities.weights_by_replicas
            and existing_route is not None
            and not foreign_route
            else None
        ),
    )
    decision = machine.decide(rollout.spec, rollout.status, observed)
    executed = await executor.execute(
        kube,
        executor.Snapshot(
            rollout=rollout,
            router=router,
            route=existing_route,
            foreign_route=foreign_route,
            blocked=None if seen_route.problem else (seen_route.blocked or taken),
            by_version=by_version,
            deployments=deployments,
            deployment_names=dep_names,
            written=written,
            now=now,
            init_image=settings.storage_initializer_image if settings is not None else None,
            observed=known,
            route_read=seen_route.read,
            ledger=ctx.ledger,
            holds=ctx.holds.get((ns, name), 0),
            route_problem=seen_route.problem,
        ),
        decision,
    )
    status = executed.status
    for event in executed.events:
        namespaces.post(
            body, type=event.type, reason=event.reason, message=event_message(event.message)
        )
    metrics.record_reconcile(
        rollout, status, written, executed.route_written_at, measured=due is not None
    )
    await roles.update_roles(kube, rollout, status, mvs, now, ctx.status_writes)
    lapse = await retention.apply(
        kube, rollout, body, status, mvs, now, ctx.ledger, ctx.status_writes,
        retention.deployed(indexes, ns, mvs),
    )  # fmt: skip
    delay = decision.requeue_after
    if lapse is not None:  # a version kept as recently served expires then
        delay = lapse if delay is None else min(delay, lapse)
    if executed.failures:
        # Refused writes are not retried in a tight loop ...
        delay = max(delay or 0.0, executor.APPLY_FAILED_RETRY)
    # A held decision is made again soon, backing off while it lasts (``handlers.holds``).
    delay = holds.after(ctx.holds, (ns, name), executed.held, delay)
    if analysis_target(rollout.spec, status) is not None:
        # ... but analysis never waits for them: a failing candidate is still rolled back.
        wait = analysis_round.next_round_in(status, now)
        wait = 0.0 if wait is None else wait
        delay = wait if delay is None else min(delay, wait)
    if executed.refused is not None:
        # Events and metrics of the decision are out (the Events keep its record); now
        # let the daemon retry the status write with a backoff.
        raise executed.refused
    return delay, executed.wrote


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def rollout_deleted(*, body: kopf.Body, memo: kopf.Memo, retry: int, **kwargs: Any) -> None:
    """The Rollout's children go with it (owner references), but with ``deletionPolicy:
    KeepStable`` what serves the stable version, which is first orphaned
    (``handlers.orphans.keep_stable``; a failure is retried ``KEEP_ATTEMPTS`` times, then
    reported and given up: a deletion never hangs on it). Its ModelVersions stop being
    served, so their roles are cleared and their deletion no longer waits."""
    rollout = Rollout.model_validate(dict(body))
    ns, name, model = rollout.metadata.namespace, rollout.metadata.name, rollout.spec.model
    ctx = context(memo)
    kube = ctx.kube
    stable = rollout.status.stable_version
    owned = {v: n for (n, v, _st) in kwargs["deployments_by_rollout"].get((ns, name), [])}
    if rollout.spec.deletion_policy == "KeepStable" and stable and stable in owned:
        try:
            kept = await orphans.keep_stable(kube, rollout, router_for(rollout.spec), owned[stable])
        except Exception as e:
            if retry + 1 < KEEP_ATTEMPTS:
                raise kopf.TemporaryError(f"keeping {stable}: {describe(e)}", delay=5) from e
            log.error("%s/%s: could not keep %s serving: %s", ns, name, stable, describe(e))
            namespaces.post(
                body,
                type="Warning",
                reason="KeepStableFailed",
                message=event_message(f"could not keep {stable} serving: {describe(e)}"),
            )
        else:
            log.info("%s/%s deleted; kept serving %s: %s", ns, name, stable, ", ".join(kept))
    elif rollout.spec.deletion_policy == "KeepStable":
        log.info("%s/%s deleted with no stable Deployment to keep", ns, name)
    mvs = kwargs["modelversions_by_model"].get((ns, model), [])  # update_roles picks its own
    await roles.update_roles(kube, rollout, None, mvs, datetime.now(UTC), ctx.status_writes)
    metrics.forget(ns, rollout.metadata.name)
