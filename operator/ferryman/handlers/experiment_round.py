"""One look of an abTest, taken with each analysis round (``handlers.analysis``): the
objective's queries per variant (users and successes since the experiment began; for
``unit: requests`` also requests and the delta method's per-user sums),
then the pure verdict (``plan.experiment.look``) into ``status.experiment``, which the
state machine acts on (``plan.experiment_stage``) in the same reconcile and keeps in the
same status write, so a restart goes on from it and a lost write is a look taken again
(the counters are cumulative: never a look counted twice).

Its own module so the analysis round stays about guardrail metrics.
"""

from __future__ import annotations

from datetime import datetime

from ferryman.analysis import templates
from ferryman.analysis.evaluate import QueryResult
from ferryman.analysis.provider import MetricsProvider
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.api.rollout_experiment import ExperimentStatus, Unit
from ferryman.plan import evidence, experiment, experiment_stage


async def look(
    rollout: Rollout,
    target: evidence.AnalysisTarget,
    provider: MetricsProvider,
    by_version: dict[str, ModelVersion],
    now: datetime,
) -> None:
    """Take a look when the Rollout is an abTest whose candidate serves its users
    (``status.stageSince`` set) and set ``rollout.status.experiment``; a look without
    usable counts keeps the last verdict and says why in its message."""
    spec, s = rollout.spec, rollout.status
    ab, analysis = spec.strategy.ab_test, spec.analysis
    if ab is None or analysis is None or s.stage_since is None:
        return
    if not target.relative or target.stable is None:
        return  # baking: the test is over

    def values(version: str) -> dict[str, str]:
        mv = by_version.get(version)
        return {
            "model": spec.model,
            "version": version,
            "namespace": rollout.metadata.namespace,
            "workload": mv.metadata.name if mv else "",
            "stableVersion": target.stable or "",
            "interval": analysis.interval,
        }

    def usable(r: QueryResult) -> float | None:
        return r.value if r.usable else None

    objective = ab.objective
    counts: list[experiment.Counts] = []
    result: ExperimentStatus | str
    try:
        for version in (target.stable, target.version):

            async def read(query: str, version: str = version) -> float | None:
                return usable(await provider.query(templates.render(query, values(version))))

            delta = objective.delta_method
            if objective.unit == Unit.REQUESTS and delta is not None:
                counts.append(
                    experiment.Counts(
                        users=await read(delta.users),
                        successes=await read(objective.successes),
                        requests=await read(objective.trials),
                        requests_squared=await read(delta.trials_squared),
                        successes_squared=await read(delta.successes_squared),
                        cross=await read(delta.trials_times_successes),
                    )
                )
            else:
                counts.append(
                    experiment.Counts(await read(objective.trials), await read(objective.successes))
                )
    except KeyError as e:  # an unknown {{variable}} in an objective query
        result = f"objective query: {e}"
    else:
        result = experiment.look(
            objective,
            counts[0],
            counts[1],
            s.experiment,
            deadline=experiment_stage.deadline_reached(spec, s, now),
            now=now,
        )
    if isinstance(result, str):
        if s.experiment is not None:
            s.experiment = s.experiment.model_copy(
                update={"message": f"last look not counted: {result}"[:512]}
            )
        return
    s.experiment = result
