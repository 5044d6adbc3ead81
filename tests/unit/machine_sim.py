"""A tiny simulated cluster for driving the operator's decision and execution code in
tests, so tests read like rollouts.

The world is Kubernetes objects in an in-memory fake (``Cluster``, a ``FakeKube`` whose
Deployments have replicas and Ready replicas): each reconcile observes those objects the
way the handler does (its Deployment index, its router, the route as read back), asks
the real state machine (``plan.machine.decide``) and has the real executor
(``handlers.executor.execute``) write the decision into the fake, in the executor's own
order. Pods become Ready one tick later (unless a version is marked broken or a test
made some unready); a scale-down takes Ready pods away at once.

With ``index_lag`` > 0 the executor also gets kopf's indexes of ferryman's objects
(``Snapshot.observed``, the route from its entry), lagging: each object's entry is the
object as it was at the end of one of the last ``index_lag`` reconciles, picked at random
per object (so entries arrive late and out of order), filtered by the operator's own
trust rule (``handlers.ledger.trusted``) with a ledger kept across reconciles. The
Deployment index the decision is made from stays current.

``replicas``, ``available`` and ``route`` are views of the fake, refreshed after every
write; ``writes`` is the executor's ordered writes in the state machine's vocabulary
(("scale", (version, replicas)), ("route", Route), ("delete", version)), recorded only
when an object really changed; ``capacity`` holds, for every write and at the end of
every reconcile, (Ready pods behind the live plain Service when the reconcile began,
Ready pods behind it after that write), counted from the Service's real selector and the
Deployments' pod labels.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cases.api_cases import model_version
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout, RolloutSpec, RolloutStatus
from ferryman.handlers import executor, ledger, rollouts
from ferryman.plan import labels, machine, serving
from ferryman.plan.capacity import needed
from ferryman.plan.decision import (
    Action,
    Approval,
    Decision,
    DeploymentState,
    Event,
    Observed,
    VersionRecord,
)
from ferryman.plan.pod_failures import PodFailure
from ferryman.plan.route import Route
from ferryman.routing import Router, router_for
from unit.fake_kube import FakeKube, Obj, json_copy

HISTORY = 8  # reconciles of objects kept with ``index_lag``
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NS, NAME, UID = "ml", "fraud", "uid-1"
DEPLOYMENT = ("apps/v1", "Deployment")
VERSION_KEY = f"{labels.PREFIX}/version"


def canary_spec(steps: list[Any], **extra: Any) -> RolloutSpec:
    data: dict[str, Any] = {
        "model": "fraud",
        "target": {"version": "1.0.0"},
        "replicas": 4,
        "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
        "strategy": {"canary": {"steps": steps}},
        "scaleDownDelaySeconds": 60,
        "progressDeadlineSeconds": 120,
    }
    data.update(extra)
    return RolloutSpec.model_validate(data)


def handler_router(rollout: Rollout) -> Router:
    """The router the handler uses for ``rollout`` (the one place the simulator picks it)."""
    return router_for(rollout.spec)


def by_replicas(spec: RolloutSpec) -> bool:
    """Whether ``spec``'s router weighs by replicas, i.e. plain Services (the one place
    the simulator asks)."""
    return router_for(spec).capabilities.weights_by_replicas


def _ready(obj: Obj) -> int:
    return int((obj.get("status") or {}).get("availableReplicas") or 0)


def _set_ready(obj: Obj, ready: int) -> None:
    replicas = int(obj["spec"]["replicas"])
    ready = max(0, min(ready, replicas))
    obj["status"] = {
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }


@dataclass
class Cluster(FakeKube):
    """The fake as a tiny cluster: applying a Deployment keeps its status (the API server
        never takes status from an apply) with pods beyond the new size gone at once, a spec
        gets a new ``metadata.resourceVersion`` and a spec change raises ``metadata.generation``
    (of all but Services, as the API server does), and every write is reported to
        ``on_write(op, before, after)``."""

    on_write: Any = None
    version: int = 0  # the last resourceVersion handed out

    async def apply(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta.get("namespace"), meta.get("name"))
        before = self.objects.get(key)  # replaced, never changed in place, by the apply
        applied = await super().apply(obj)
        # The API server's resourceVersion, and generation (not on Services): one more on
        # every spec change.
        self.version += 1
        self.objects[key]["metadata"]["resourceVersion"] = str(self.version)
        applied["metadata"]["resourceVersion"] = str(self.version)
        # The API server's uid: given at creation, kept by every apply.
        uid = (before or {}).get("metadata", {}).get("uid") or f"uid-{self.version}"
        self.objects[key]["metadata"]["uid"] = applied["metadata"]["uid"] = uid
        if obj["kind"] != "Service":
            last = (before or {}).get("metadata", {}).get("generation", 0)
            changed = before is None or before.get("spec") != obj.get("spec")
            self.objects[key]["metadata"]["generation"] = last + 1 if changed else last
            applied["metadata"]["generation"] = last + 1 if changed else last
        if (obj["apiVersion"], obj["kind"]) == DEPLOYMENT:
            held = self.objects[key]
            _set_ready(held, _ready(before) if before is not None else 0)
        if self.on_write is not None:
            self.on_write("apply", before, self.objects[key])
        return applied

    async def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        preconditions: dict[str, str] | None = None,
    ) -> None:
        before = self.objects.get((api_version, kind, namespace, name))
        await super().delete(api_version, kind, namespace, name, preconditions=preconditions)
        if self.on_write is not None:
            self.on_write("delete", before, None)

    def deployments(self) -> list[Obj]:
        return [o for (a, k, ns, _), o in self.objects.items() if (a, k) == DEPLOYMENT and ns == NS]


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits on anything but the fake (which never suspends)
    to its end, without an event loop."""
    try:
        while True:
            if coro.send(None) is not None:
                raise AssertionError("the executor waited on something the fake cannot answer")
    except StopIteration as done:
        return done.value
    finally:
        coro.close()


@dataclass(frozen=True)
class Moment:
    """The world right after one write of the executor (``write`` in the vocabulary of
    ``Sim.writes``; None for a write that changed nothing there, or the end of a
    reconcile)."""

    write: tuple[str, Any] | None
    route: Route | None  # the live route as read back from its object
    replicas: dict[str, int]  # desired, by version
    ready: dict[str, int]  # Ready, by version
    size: int  # spec.replicas
    start: int  # plain Services: Ready pods behind the live Service when the reconcile began
    behind: int  # plain Services: Ready pods behind it now


@dataclass
class Sim:
    spec: RolloutSpec
    versions: list[str] = field(default_factory=lambda: ["1.0.0"])
    now: datetime = T0
    status: RolloutStatus = field(default_factory=RolloutStatus)  # the Rollout's, as read
    broken: set[str] = field(default_factory=set)  # versions that never get Ready
    unready: dict[str, int] = field(default_factory=dict)  # pods a test made unready
    events: list[Event] = field(default_factory=list)
    writes: list[tuple[str, Any]] = field(default_factory=list)  # ordered, as above
    action_seq: int = 0
    # metadata.creationTimestamp of the ModelVersions (by version) and the Rollout;
    # absent: unknown.
    created: dict[str, datetime] = field(default_factory=dict)
    rollout_created: datetime | None = None
    # Set: the route object is someone else's (ferryman's is handed over, or a foreign
    # one is there before ferryman wrote any); None: it is (again) this Rollout's.
    blocked: str | None = None
    # The world right after every write of the executor that changed replicas or the
    # route, and at the end of every reconcile, in order.
    moments: list[Moment] = field(default_factory=list)
    kube: Cluster = field(default_factory=Cluster)
    # Views of the fake (module docstring): desired and Ready replicas by version, the
    # route as read back from the object the router wrote.
    replicas: dict[str, int] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    route: Route | None = None
    index_lag: int = 0  # reconciles the object indexes lag by (module docstring)
    # What failing pods report, by version (``handlers.pods.failures_by_version``).
    pod_failures: dict[str, PodFailure] = field(default_factory=dict)
    approvals: list[Approval] = field(default_factory=list)  # the Rollout's ModelApprovals
    lag_seed: int = 0
    ledger: ledger.Ledger = field(default_factory=ledger.Ledger)
    _history: list[dict[Any, Obj]] = field(default_factory=list, repr=False)
    _mvs: dict[str, ModelVersion] = field(default_factory=dict, repr=False)
    _start: int = 0
    _base: tuple[RolloutSpec, Rollout, Router] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.kube.on_write = self._on_write
        self.kube.put_status("rollouts", NS, NAME, "1", {})

    # --- the objects -----------------------------------------------------------------

    def rollout(self) -> Rollout:
        """The Rollout as the handler reads it: spec and status as the sim holds them."""
        held = self.kube.statuses[("rollouts", NS, NAME)]
        return Rollout.model_validate(
            {
                "apiVersion": "ferryman.dev/v1alpha1",
                "kind": "Rollout",
                "metadata": {
                    "name": NAME,
                    "namespace": NS,
                    "uid": UID,
                    "resourceVersion": held["resourceVersion"],
                    "generation": 1,
                },
                "spec": self.spec.model_dump(by_alias=True, mode="json", exclude_none=True),
                "status": held["status"],
            }
        )

    def base(self) -> tuple[Rollout, Router]:
        """The Rollout without its status (its identity: name, uid, spec) and its router,
        built again only when the spec changed."""
        if self._base is None or self._base[0] is not self.spec:
            rollout = Rollout.model_validate(
                {
                    "apiVersion": "ferryman.dev/v1alpha1",
                    "kind": "Rollout",
                    "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1},
                    "spec": self.spec.model_dump(by_alias=True, mode="json", exclude_none=True),
                }
            )
            self._base = (self.spec, rollout, handler_router(rollout))
        return self._base[1], self._base[2]

    def model_version(self, version: str) -> ModelVersion:
        if version not in self._mvs:
            mv = ModelVersion.model_validate(
                model_version(name=f"fraud-{version}", version=version)
            )
            mv.metadata.namespace = NS
            self._mvs[version] = mv
        return self._mvs[version]

    def put_version(self, version: str, replicas: int, ready: int) -> None:
        """A Deployment (with its Service and budget) of ``version`` that is already
        there, e.g. a leftover of an old version."""
        mv, rollout = self.model_version(version), self.rollout()
        self.kube.put(serving.service(mv, rollout))
        self.kube.put(serving.pod_disruption_budget(mv, rollout))
        deployment = serving.deployment(mv, rollout, replicas=replicas)
        _set_ready(deployment, ready)
        self.kube.put(deployment)
        self._refresh()

    def _index(self) -> list[tuple[str, str, DeploymentState]]:
        """The handler's Deployment index entries for this Rollout (its own index
        function, called as kopf calls it)."""
        index: Any = rollouts.deployments_by_rollout
        found: list[tuple[str, str, DeploymentState]] = []
        for obj in self.kube.deployments():
            entry = index(body=obj, meta=obj["metadata"], namespace=NS)
            if entry is not None and (NS, NAME) in entry:
                found.append(entry[(NS, NAME)])
        return found

    def _route_object(self, router: Router) -> Obj | None:
        return self.kube.objects.get((router.api_version, router.kind, NS, NAME))

    def _own_route(self) -> None:
        """Make the route object someone else's while ``blocked`` is set, ours again
        once it is not."""
        rollout, router = self.base()
        key = (router.api_version, router.kind, NS, NAME)
        obj = self.kube.objects.get(key)
        if self.blocked is not None:
            theirs = {"apiVersion": "v1", "kind": "ConfigMap", "name": "theirs", "uid": "uid-9"}
            if obj is None:
                obj = {"apiVersion": key[0], "kind": key[1], "metadata": {}, "spec": {}}
                obj["metadata"].update(name=NAME, namespace=NS)
                self.kube.objects[key] = obj
            obj["metadata"]["ownerReferences"] = [theirs]
        elif obj is not None and not labels.is_owned_by(obj, rollout):
            obj["metadata"]["ownerReferences"] = [labels.owner_reference(rollout)]

    def _reverse(self) -> dict[str, str]:
        return {self.model_version(v).metadata.name: v for v in self.versions}

    def _refresh(self) -> None:
        index = self._index()
        self.replicas = {v: st.replicas for (_n, v, st) in index}
        self.available = {v: st.available for (_n, v, st) in index}
        rollout, router = self.base()
        obj = self._route_object(router)
        if obj is None:
            self.route = None
        elif labels.is_owned_by(obj, rollout):
            self.route = router.read(obj, self._reverse())

    # --- observe, decide, execute -----------------------------------------------------

    def observed(self, action: Action | None = None) -> Observed:
        """What the handler observes (``handlers.rollouts.reconcile``), from the fake: the
        one place the simulator builds ``Observed``."""
        rollout, router = self.base()
        existing = self._route_object(router)
        foreign = existing is not None and not labels.is_owned_by(existing, rollout)
        return Observed(
            versions=tuple(
                VersionRecord(f"fraud-{v}", v, created=self.created.get(v)) for v in self.versions
            ),
            deployments={v: st for (_n, v, st) in self._index()},
            now=self.now,
            capabilities=router.capabilities,
            route=(
                router.read(existing, self._reverse())
                if by_replicas(rollout.spec) and existing is not None and not foreign
                else None
            ),
            action=action,
            generation=rollout.metadata.generation,
            pod_failures=dict(self.pod_failures),
            approvals=tuple(self.approvals),
            created=self.rollout_created,
            blocked=(
                f"{router.kind} {NAME} exists and is not owned by this Rollout" if foreign else None
            ),
        )

    def _snapshot(self, rollout: Rollout, blocked: str | None) -> executor.Snapshot:
        router = self.base()[1]
        existing = self._route_object(router)
        index = self._index()
        observed, route_read = self._lagging_index(), True
        if (router.kind, NAME) in observed:
            existing, route_read = observed[(router.kind, NAME)], False
            theirs = not labels.is_owned_by(existing, rollout)
            blocked = (
                f"{router.kind} {NAME} exists and is not owned by this Rollout" if theirs else None
            )
        return executor.Snapshot(
            rollout=rollout,
            router=router,
            route=json_copy(existing),
            foreign_route=existing is not None and not labels.is_owned_by(existing, rollout),
            blocked=blocked,
            by_version={v: self.model_version(v) for v in self.versions},
            deployments={v: st for (_n, v, st) in index},
            deployment_names={v: n for (n, v, _st) in index},
            written=rollout.status.model_dump(by_alias=True, mode="json"),
            now=self.now,
            observed=observed,
            route_read=route_read,
            ledger=self.ledger if self.index_lag else None,
        )

    def _lagging_index(self) -> dict[tuple[str, str], Obj]:
        """The trusted entries of a lagging index (module docstring); {} without lag."""
        if not self.index_lag or not self._history:
            return {}
        rng = random.Random(self.lag_seed + len(self._history))
        keys = {k for h in self._history[-self.index_lag :] for k in h}
        out: dict[tuple[str, str], Obj] = {}
        for key in sorted(keys):
            obj = rng.choice(self._history[-self.index_lag :]).get(key)
            entry = ledger.Entry(json_copy(obj), time.monotonic()) if obj else None
            if entry is not None and ledger.trusted(entry, self.ledger, time.monotonic()):
                out[(key[1], key[3])] = entry.obj
        return out

    def reconcile(self, action: str | None = None) -> Decision:
        act = None
        if action:
            self.action_seq += 1
            act = Action(action, f"id-{self.action_seq}")
        # The Rollout as it is now (a test may have edited its status).
        held = self.kube.statuses[("rollouts", NS, NAME)]
        rv = str(int(held["resourceVersion"]) + 1)
        dumped = self.status.model_dump(by_alias=True, mode="json")
        self.kube.put_status("rollouts", NS, NAME, rv, dumped)
        self._own_route()
        rollout = self.rollout()
        observed = self.observed(act)
        d = machine.decide(rollout.spec, rollout.status, observed)
        self._start = self.behind()
        done = drive(executor.execute(self.kube, self._snapshot(rollout, observed.blocked), d))
        if done.refused is not None:
            raise done.refused
        self._moment(None)
        self._refresh()
        if self.index_lag:
            kept = max(self.index_lag, HISTORY) - 1  # a test may put back older objects
            self._history = [*self._history[-kept:], json_copy(self.kube.objects)]
        self.status = RolloutStatus.model_validate(
            self.kube.statuses[("rollouts", NS, NAME)]["status"]
        )
        self.events += done.events
        if done.held and act is not None:
            # Held on a lagging index: the action's annotation is still unhandled, and the
            # operator decides again HELD_RETRY seconds later (the index one event on).
            return self.reconcile(action)
        return d

    @property
    def capacity(self) -> list[tuple[int, int]]:
        """Plain Services: (Ready pods behind the live Service when the reconcile began,
        after a write) for every write and at the end of every reconcile."""
        return [(m.start, m.behind) for m in self.moments]

    def _moment(self, write: tuple[str, Any] | None) -> None:
        replicas, ready = {}, {}
        for obj in self.kube.deployments():
            version = obj["metadata"]["annotations"][VERSION_KEY]
            replicas[version], ready[version] = int(obj["spec"]["replicas"]), _ready(obj)
        size, behind = self.spec.replicas, self.behind()
        self.moments.append(Moment(write, self.route, replicas, ready, size, self._start, behind))

    def _on_write(self, op: str, before: Obj | None, after: Obj | None) -> None:
        obj = after if after is not None else before
        if obj is None:
            return
        kind, name = obj["kind"], obj["metadata"]["name"]
        write: tuple[str, Any] | None = None
        if (obj["apiVersion"], kind) == DEPLOYMENT:
            version = obj["metadata"]["annotations"][VERSION_KEY]
            if after is None:
                write = ("delete", version)
            elif before is None or before["spec"]["replicas"] != after["spec"]["replicas"]:
                write = ("scale", (version, int(after["spec"]["replicas"])))
        router = self.base()[1]
        if (obj["apiVersion"], kind, name) == (router.api_version, router.kind, NAME):
            route = router.read(after, self._reverse()) if after is not None else None
            if route != self.route:
                write = ("route", route)
            self.route = route
        if write is not None:  # other writes change neither capacity nor the route
            self.writes.append(write)
            self._moment(write)

    def behind(self) -> int:
        """Ready pods the live Service (plain-Service router) selects now: the
        Deployments whose pod labels match its selector."""
        live = self.kube.objects.get(("v1", "Service", NS, NAME))
        if not by_replicas(self.spec) or live is None:
            return 0
        selector = live["spec"]["selector"].items()
        return sum(
            _ready(d)
            for d in self.kube.deployments()
            if selector <= d["spec"]["template"]["metadata"]["labels"].items()
        )

    def fork(self) -> Sim:
        """An independent copy of this world (its cluster, status, clock and history), to
        try another future from the same moment."""
        self.kube.on_write = None
        try:
            twin = copy.deepcopy(self)
        finally:
            self.kube.on_write = self._on_write
        twin.kube.on_write = twin._on_write
        return twin

    def tick(self, seconds: float = 1.0) -> Decision:
        """Time passes; pods become Ready; the operator reconciles."""
        self.now += timedelta(seconds=seconds)
        for obj in self.kube.deployments():
            version = obj["metadata"]["annotations"][VERSION_KEY]
            if version not in self.broken:
                _set_ready(obj, int(obj["spec"]["replicas"]) - self.unready.get(version, 0))
        self._refresh()
        return self.reconcile()

    def run_until(self, predicate: Any, limit: int = 200, seconds: float = 1.0) -> None:
        for _ in range(limit):
            if predicate(self):
                return
            self.tick(seconds)
        raise AssertionError(f"not reached; status: {self.status}")


def retarget(sim: Sim, version: str) -> None:
    """What GitOps does: register ``version`` and make it the Rollout's target."""
    sim.versions.append(version)
    sim.spec = sim.spec.model_copy(
        update={"target": sim.spec.target.model_copy(update={"version": version})}
    )


# --- invariants (DESIGN.md §2), over the moments after every write ----------------------


def no_capacity_lost(sim: Sim, since: int = 0) -> None:
    """Plain Services: no write leaves fewer Ready pods behind the live Service than
    ``min(Ready pods behind it when the reconcile began, replicas)``."""
    for m in sim.moments[since:]:
        assert m.behind >= min(m.start, m.size), (m, sim.writes[-8:])


def route_moves_before_capacity_goes(sim: Sim, since: int = 0) -> None:
    """Routers with weights: no scale-down or delete leaves a version with fewer replicas
    than the live route's weight for it needs at that moment (a mirrored candidate needs
    one): the route moved away first."""
    for i, m in enumerate(sim.moments[since:], start=since):
        if m.write is None or m.write[0] == "route" or m.route is None:
            continue
        version = m.write[1] if m.write[0] == "delete" else m.write[1][0]
        previous = sim.moments[i - 1].replicas.get(version, 0) if i > 0 else 0
        now = m.replicas.get(version, 0)
        if now >= previous:
            continue  # not capacity going
        route, need = m.route, 0
        if version == route.stable:
            need = needed(m.size, route.stable_weight)
        if version == route.candidate:
            need = needed(m.size, route.candidate_weight)
            need = max(need, 1 if route.mirror_percent > 0 else 0)
        assert now >= need, (m, sim.writes[-8:])


def no_weight_on_unready(sim: Sim, since: int = 0) -> None:
    """Routers with weights: no route write gives a version more weight (or mirrored
    traffic) than it had unless, at that moment, it has the Ready pods that weight needs
    (DESIGN.md §2: never weight on unready capacity; a mirror needs one)."""
    for i, m in enumerate(sim.moments[since:], start=since):
        if m.write is None or m.write[0] != "route" or m.route is None:
            continue
        old = sim.moments[i - 1].route if i > 0 else None
        route = m.route
        shares = [(route.stable, route.stable_weight, 0)]
        if route.candidate:
            shares.append((route.candidate, route.candidate_weight, route.mirror_percent))
        for version, weight, mirror in shares:
            had, mirrored = 0, 0
            if old is not None and version == old.stable:
                had = old.stable_weight
            if old is not None and version == old.candidate:
                had, mirrored = old.candidate_weight, old.mirror_percent
            if weight <= had and mirror <= mirrored:
                continue
            need = max(needed(m.size, weight), 1 if mirror > mirrored else 0)
            assert m.ready.get(version, 0) >= need, (m, sim.writes[-8:])


def check_writes(sim: Sim, since: int = 0) -> None:
    """The order invariants of the executor's writes since moment ``since``, for the
    Rollout's router."""
    if by_replicas(sim.spec):
        no_capacity_lost(sim, since)
    else:
        route_moves_before_capacity_goes(sim, since)
        no_weight_on_unready(sim, since)
