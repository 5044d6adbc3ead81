"""Plain-text views of Rollouts and ModelVersions for ``kubectl ferryman`` (pure: objects
in, text out). Plain text, not curses, so output can be pasted into a README or a ticket."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ferryman.api.modelversion import DvcData, ModelVersion
from ferryman.api.rollout import HistoryEntry, Measurement, Rollout, RolloutSpec
from ferryman.api.rollout_experiment import ExperimentStatus
from ferryman.plan import experiment_stage, semver, stages
from ferryman.routing import router_for

MEASUREMENTS_SHOWN = 6
HISTORY_SHOWN = 8


def _t(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def status(rollout: Rollout) -> str:
    s, spec = rollout.status, rollout.spec
    plan = stages.stages(spec)
    kind = spec.strategy.kind
    router = router_for(spec).name
    w = s.weights
    lines = [
        f"Rollout {rollout.metadata.namespace}/{rollout.metadata.name} "
        f"(model {spec.model}, {kind} over {router})"
    ]
    rows: list[tuple[str, str]] = [
        (
            "Phase",
            f"{s.phase.value if s.phase else 'Pending'}" + (f" — {s.message}" if s.message else ""),
        )
    ]
    # Conditions that say the Rollout is not what its phase suggests (Available=False,
    # OwnershipConflict, ApplyFailed, StatusWriteFailed).
    for c in s.conditions or []:
        bad = c.status.value == "False" if c.type == "Available" else c.status.value == "True"
        if bad and c.type in ("Available", "OwnershipConflict", "ApplyFailed", "StatusWriteFailed"):
            rows.append(("Warning", f"{c.type}={c.status.value} ({c.reason}): {c.message}"))
    if s.pause is not None:
        rows.append(("Pause", f"{s.pause.reason.value} since {_t(s.pause.since)}"))
    rows.append(("Stable", f"{s.stable_version or '-'}" + (f"   weight {w.stable}%" if w else "")))
    if s.candidate_version:
        rows.append(
            (
                "Candidate",
                f"{s.candidate_version}"
                + (f"   weight {w.candidate}%   mirror {w.mirror_percent}%" if w else ""),
            )
        )
        if spec.strategy.ab_test is not None:  # the users it serves besides any weight
            users = experiment_stage.describe(experiment_stage.users_of(spec))
            rows.append(("A/B users", f"{users} (requests without it: stable)"))
    gate = spec.gates.approvals if spec.gates else None
    if s.approval is not None and (gate is not None or not s.candidate_version):
        ap = s.approval
        who = ", ".join(ap.approved_by or []) or "nobody yet"
        hidden = ap.counted - len(ap.approved_by or [])
        extra = f" and {hidden} more" if hidden > 0 else ""
        at = f", {gate.at.value}" if gate is not None else ""
        rows.append(
            ("Approvals", f"{ap.counted}/{ap.required} for {ap.version}{at} by {who}{extra}")
        )
    if s.previous_stable_version:
        rows.append(("Previous", s.previous_stable_version))
    if s.current_step is not None and s.candidate_version:
        rows.append(("Step", f"{s.current_step}/{len(plan)}"))
    target = spec.target.version or f"track {spec.target.track}"
    rows.append(("Target", target))
    if s.last_action is not None:
        la = s.last_action
        rows.append(
            ("Action", f"{la.action} {la.result.value} at {_t(la.at)} — {_short(la.message, 140)}")
        )
    more = s.analysis or s.history or s.experiment
    for i, (label, value) in enumerate(rows):
        lines.append(f"{'└' if i == len(rows) - 1 and not more else '├'}─ {label + ':':<11}{value}")
    if s.analysis is not None:
        a = s.analysis
        failures = ", ".join(f"{k}: {v}" for k, v in (a.failures or {}).items()) or "none"
        lines.append(
            f"├─ Analysis:  failures {failures}; inconclusive {a.inconclusive}; "
            f"errors {a.consecutive_errors}; next {_t(a.next_measurement_at)}"
        )
        shown = (a.measurements or [])[-MEASUREMENTS_SHOWN:]
        for m in shown:
            lines.append(f"│   {measurement_line(m)}")
            lines.append(f"│       query: {_short(m.query, 110)}")
    if s.experiment is not None:
        clock = experiment_stage.clock(s)
        held = clock.held_seconds if clock is not None else 0.0
        paused = clock is not None and clock.held_since is not None
        lines += experiment_lines(s.experiment, spec, last=not s.history, held=held, paused=paused)
    if s.history:
        lines.append("└─ History:")
        for h in s.history[-HISTORY_SHOWN:]:
            lines.append(
                f"    {_t(h.at)}  {h.version:<12} {_outcome(h):<24} {_short(h.reason, 140)}"
            )
    return "\n".join(lines)


def measurement_line(m: Measurement) -> str:
    """One analysis measurement: when, metric, verdict, value (and the stable's), and the
    threshold, or the message when there is none."""
    value = "-" if m.value is None else f"{m.value:.4g}"
    stable = "" if m.stable_value is None else f" (stable {m.stable_value:.4g})"
    return (
        f"{_t(m.at)}  {m.metric:<16} {m.verdict.value:<12} {value}{stable}"
        f"  {m.threshold or m.message}"
    )


def experiment_lines(
    e: ExperimentStatus, spec: RolloutSpec, *, last: bool, held: float = 0.0, paused: bool = False
) -> list[str]:
    """The abTest's verdict: per variant users (and requests, for unit requests),
    successes and rate; the difference with its always-valid interval, p-value, e-value
    and users still needed; the unit counted and the time the test's clock was held
    (``held`` seconds, ``paused``: a hold in course)."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:+.2%}" if x < 0 or x > 0 else "0.00%"

    alpha = spec.strategy.ab_test.objective.alpha if spec.strategy.ab_test else 0.05
    interval = f"[{pct(e.interval[0])}, {pct(e.interval[1])}]" if e.interval else "-"
    e_value = "-" if e.e_value is None else f"{e.e_value:.3g}"
    needed = "-" if e.users_needed is None else str(e.users_needed)
    requests = e.stable.trials is not None or e.candidate.trials is not None
    variants = (("stable", e.stable), ("candidate", e.candidate))
    rows = [("variant", "users", *(["requests"] if requests else []), "successes", "rate")]
    rows += [
        (
            name,
            str(v.users),
            *([str(v.trials if v.trials is not None else "-")] if requests else []),
            str(v.successes),
            "-" if v.rate is None else f"{v.rate:.2%}",
        )
        for name, v in variants
    ]
    bar = "    " if last else "│   "
    clock = ""
    if paused:
        clock = f"; clock stopped (held {held:.0f}s before this hold)"
    elif held:
        clock = f"; clock held {held:.0f}s (the deadline moves by it)"
    return [
        f"{'└' if last else '├'}─ A/B test:  {e.outcome}; look {e.looks} at {_t(e.at)}; "
        f"counts {e.unit}{clock}",
        *(f"{bar}{line}" for line in _table(rows).splitlines()),
        f"{bar}difference {pct(e.difference)}, {1 - alpha:.0%} CI {interval}, "
        f"p-value {e.p_value:.3g}, e-value {e_value}, users needed {needed}",
        f"{bar}{_short(e.message, 140)}",
    ]


def _outcome(h: HistoryEntry) -> str:
    """``RolledBack (Analysis)``: the outcome, and its cause when it has one."""
    return h.outcome.value + (f" ({h.cause.value})" if h.cause else "")


def history(rollout: Rollout) -> str:
    rows = [("VERSION", "OUTCOME", "CAUSE", "AT", "REASON")]
    rows += [
        (h.version, h.outcome.value, h.cause.value if h.cause else "-", _t(h.at), h.reason)
        for h in rollout.status.history or []
    ]
    return _table(rows)


def lineage(versions: Sequence[ModelVersion]) -> str:
    def key(mv: ModelVersion) -> tuple[int, semver.Version | str]:
        v = mv.spec.version
        return (0, semver.Version(v)) if semver.is_semver(v) else (1, v)

    rows = [
        (
            "VERSION",
            "NAME",
            "PHASE",
            "ROLE",
            "DATA VERSION",
            "DVC DATA",
            "CODE COMMIT",
            "TRAINING RUN",
            "DIGEST",
            "METRICS",
            "SERVED FROM",
            "SERVED UNTIL",
        )
    ]
    for mv in sorted(versions, key=key):
        lin, st = mv.spec.lineage, mv.status
        rows.append(
            (
                mv.spec.version,
                mv.metadata.name,
                st.phase.value if st.phase else "-",
                st.role.value if st.role else "-",
                (lin.data_version if lin else None) or "-",
                _dvc_short(mv),
                (lin.code_commit if lin else None) or "-",
                (lin.training_run if lin else None) or "-",
                mv.spec.artifact.digest[:19] + "…",
                " ".join(f"{k}={v:g}" for k, v in (mv.spec.metrics or {}).items()) or "-",
                _t(st.served_from),
                _t(st.served_until),
            )
        )
    details = [
        f"  {mv.spec.version}: repo {d.repo} rev {d.rev} path {d.path} md5 {d.md5}"
        for mv in sorted(versions, key=key)
        if (d := _dvc(mv)) is not None
    ]
    return _table(rows) + ("\nDVC data:\n" + "\n".join(details) if details else "")


def _dvc(mv: ModelVersion) -> DvcData | None:
    lin = mv.spec.lineage
    return lin.data.dvc if lin and lin.data else None


def _dvc_short(mv: ModelVersion) -> str:
    """``data/tx.csv@3f2a1b0c9d md5:1f2e3d4c5b6a``: the DVC path, rev and md5, short."""
    d = _dvc(mv)
    return f"{d.path}@{d.rev[:10]} md5:{d.md5[:12]}" if d else "-"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
