"""One round of analysis for a Rollout, when one is due.

Runs inside the Rollout's daemon, before the state machine decides: the round's
measurements and counters go into the same status write as the decision, so a round
whose write was lost (the operator died in between) is measured again and counted once.

Providers come from the operator's settings by name. An inline address is used only when
the settings allow it, and never receives configured credentials. An unknown provider or
an unknown query variable makes the Rollout ``Invalid`` before any traffic moves.
"""

from __future__ import annotations

import base64
import ssl
from datetime import datetime, timedelta

import aiohttp

from ferryman.analysis import templates
from ferryman.analysis.evaluate import QueryResult, judge, judge_distribution, record_round
from ferryman.analysis.provider import MetricsProvider, Prometheus
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import AnalysisStatus, Measurement, Rollout, RolloutStatus, Verdict
from ferryman.kube.client import Kube
from ferryman.plan import evidence
from ferryman.plan.durations import parse_duration
from ferryman.settings import Settings


def problems(rollout: Rollout, settings: Settings | None) -> str | None:
    """Configuration problems found before any traffic moves."""
    analysis = rollout.spec.analysis
    if analysis is None:
        return None
    queries = [m.query for m in analysis.metrics]
    if analysis.min_samples:
        queries.append(analysis.min_samples.query)
    unknown = templates.unknown_variables(queries)
    if unknown:
        return (
            f"analysis: unknown query variable(s) {', '.join('{{' + u + '}}' for u in unknown)}; "
            f"known: {', '.join(templates.VARIABLES)}"
        )
    if analysis.address:
        if settings is None or not settings.allow_inline_addresses:
            return (
                "analysis: inline Prometheus addresses are not allowed by the operator's "
                "settings; name a configured provider"
            )
        return None
    name = analysis.provider or "default"
    if settings is None or name not in settings.providers:
        known = ", ".join(sorted(settings.providers)) if settings else ""
        return f"analysis: unknown provider {name!r} (configured: {known or 'none'})"
    return None


async def provider_for(
    rollout: Rollout, settings: Settings, session: aiohttp.ClientSession, kube: Kube
) -> MetricsProvider:
    analysis = rollout.spec.analysis
    assert analysis is not None
    if analysis.address:
        # Inline: no credentials, ever.
        return Prometheus(session, analysis.address)
    config = settings.providers[analysis.provider or "default"]
    token: str | None = None
    basic: tuple[str, str] | None = None
    if config.secret_name and settings.namespace:
        secret = await kube.get("v1", "Secret", settings.namespace, config.secret_name) or {}
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        token = data.get("token")
        if "username" in data and "password" in data:
            basic = (data["username"], data["password"])
    context: ssl.SSLContext | None = None
    if config.insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    elif config.ca_file:
        context = ssl.create_default_context(cafile=config.ca_file)
    return Prometheus(
        session,
        config.address,
        token=token,
        basic=basic,
        timeout=config.timeout_seconds,
        ssl_context=context,
    )


def due(rollout: Rollout, now: datetime) -> evidence.AnalysisTarget | None:
    target = evidence.analysis_target(rollout.spec, rollout.status)
    if target is None:
        return None
    nxt = rollout.status.analysis.next_measurement_at if rollout.status.analysis else None
    return target if nxt is None or nxt <= now else None


async def measure(
    rollout: Rollout,
    target: evidence.AnalysisTarget,
    provider: MetricsProvider,
    by_version: dict[str, ModelVersion],
    now: datetime,
) -> AnalysisStatus:
    analysis = rollout.spec.analysis
    assert analysis is not None

    def values(version: str) -> dict[str, str]:
        mv = by_version.get(version)
        return {
            "model": rollout.spec.model,
            "version": version,
            "namespace": rollout.metadata.namespace,
            "workload": mv.metadata.name if mv else "",
            "stableVersion": target.stable or "",
            "interval": analysis.interval,
        }

    samples: QueryResult | None = None
    if analysis.min_samples:
        samples = await provider.query(
            templates.render(analysis.min_samples.query, values(target.version))
        )
    measurements: list[Measurement] = []
    min_samples = analysis.min_samples.min if analysis.min_samples else None
    for metric in analysis.metrics:
        query = templates.render(metric.query, values(target.version))
        if metric.distribution is not None:
            # Two histograms over the same window: the candidate's and the stable's.
            hist = await provider.query_buckets(query)
            base = None
            if target.relative and target.stable:
                base = await provider.query_buckets(
                    templates.render(metric.query, values(target.stable))
                )
            verdict, threshold, message, value = judge_distribution(
                metric, hist, stable=base, samples=samples, min_samples=min_samples
            )
            measurements.append(
                Measurement(
                    metric=metric.name,
                    query=query,
                    value=_finite(value),
                    threshold=threshold,
                    verdict=verdict,
                    message=message,
                    at=now,
                )
            )
            continue
        result = await provider.query(query)
        stable: QueryResult | None = None
        relative = (
            metric.max_increase_vs_stable is not None or metric.max_drop_vs_stable is not None
        )
        if relative and target.relative and target.stable:
            stable = await provider.query(templates.render(metric.query, values(target.stable)))
        verdict, threshold, message = judge(
            metric,
            result,
            stable=stable,
            samples=samples,
            min_samples=analysis.min_samples.min if analysis.min_samples else None,
            relative=target.relative,
        )
        measurements.append(
            Measurement(
                metric=metric.name,
                # Long texts are shortened with a marker by the model itself.
                query=query,
                value=_finite(result.value),
                stable_value=_finite(stable.value) if stable else None,
                threshold=threshold,
                verdict=verdict,
                message=message,
                at=now,
            )
        )
    return record_round(
        rollout.status.analysis,
        analysis,
        measurements,
        at=now,
        interval=parse_duration(analysis.interval),
    )


def error_round(rollout: Rollout, problem: str, now: datetime) -> AnalysisStatus:
    """A round in which nothing could be measured (the provider could not be set up, or
    it failed in a way it does not report as an Error): every metric is an ``Error``
    measurement naming ``problem``, counted like any other round (consecutive errors
    pause the rollout; nothing is rolled back for it)."""
    analysis = rollout.spec.analysis
    assert analysis is not None
    measurements = [
        Measurement(metric=m.name, verdict=Verdict.ERROR, message=problem, at=now)
        for m in analysis.metrics
    ]
    return record_round(
        rollout.status.analysis,
        analysis,
        measurements,
        at=now,
        interval=parse_duration(analysis.interval),
    )


def _finite(x: float | None) -> float | None:
    return x if x is not None and x == x and abs(x) != float("inf") else None


def next_round_in(status: RolloutStatus, now: datetime) -> float | None:
    """Seconds until the next round is due."""
    analysis = status.analysis
    if analysis is None or analysis.next_measurement_at is None:
        return None
    return max((analysis.next_measurement_at - now) / timedelta(seconds=1), 0.0)
