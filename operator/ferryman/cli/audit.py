"""Plain-text views of the durable audit trail (issue 17 §4) for ``kubectl ferryman
lineage`` and ``history``: every interval each ModelVersion served (from its own
``status.servingHistory``, which outlives the Rollout), and what fell off a bounded
history. Pure: objects in, text out; ``cli.render`` keeps the other views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ferryman.api.modelversion import ModelVersion
from ferryman.api.older_history import OlderHistory
from ferryman.api.rollout import HistoryOutcome, Measurement
from ferryman.api.serving_history import IntervalEnd, ServedInterval

REASON_WIDTH = 160


def _t(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def measured(m: Measurement | None) -> str:
    """``error-rate=0.5 (max 0.01) at 2026-...``: the failed measurement behind a
    rollback, or an empty string."""
    if m is None:
        return ""
    value = "-" if m.value is None else f"{m.value:.4g}"
    stable = "" if m.stable_value is None else f", stable {m.stable_value:.4g}"
    return f"{m.metric}={value} ({m.threshold or m.verdict.value}{stable}) at {_t(m.at)}"


def why(i: ServedInterval) -> str:
    """Why the interval ended (or what its verdict said, while it still serves)."""
    parts = []
    if i.ended == IntervalEnd.REPLACED and i.replaced_by:
        parts.append(f"replaced by {i.replaced_by}")
    elif i.ended == IntervalEnd.ROLLOUT_DELETED:
        parts.append(f"Rollout {i.rollout} deleted")
    if i.reason and (i.outcome != HistoryOutcome.PROMOTED or not parts):
        parts.append(i.reason)
    if i.measurement is not None:
        parts.append("measured " + measured(i.measurement))
    return _short("; ".join(parts), REASON_WIDTH) or "-"


def older(summary: OlderHistory | None, what: str) -> str:
    """One line for what fell off a bounded history, or an empty string."""
    if summary is None or not summary.count:
        return ""
    by = ", ".join(f"{k} {v}" for k, v in sorted((summary.outcomes or {}).items()))
    return (
        f"{summary.count} older {what} not shown ({_t(summary.since)} to {_t(summary.until)}"
        + (f"; {by}" if by else "")
        + ")"
    )


def _rows(
    versions: Sequence[ModelVersion], rollout: str | None
) -> list[tuple[datetime, tuple[str, ...]]]:
    rows = []
    for mv in versions:
        for i in mv.status.serving_history or []:
            if rollout is not None and i.rollout != rollout:
                continue
            outcome = (i.outcome.value if i.outcome else "-") + (
                f" ({i.cause.value})" if i.cause else ""
            )
            rows.append(
                (
                    i.served_from,
                    (
                        mv.spec.version,
                        i.rollout,
                        _t(i.served_from),
                        _t(i.served_until),
                        ",".join(r.value for r in i.roles) or "-",
                        outcome,
                        i.ended.value if i.ended else "serving",
                        why(i),
                    ),
                )
            )
        last = mv.status.last_outcome
        if (
            last is not None
            and last.outcome == HistoryOutcome.REJECTED
            and (rollout is None or last.rollout == rollout)
            and last.at is not None
        ):
            rows.append(
                (
                    last.at,
                    (
                        mv.spec.version,
                        last.rollout or "-",
                        "-",
                        "-",
                        "-",
                        "Rejected",
                        "never served",
                        _short(last.reason, REASON_WIDTH) or "-",
                    ),
                )
            )
    return sorted(rows, key=lambda r: r[0])


HEADER = ("VERSION", "ROLLOUT", "SERVED FROM", "SERVED UNTIL", "ROLES", "OUTCOME", "ENDED", "WHY")


def serving(versions: Sequence[ModelVersion], rollout: str | None = None) -> str:
    """Every interval the ``versions`` served (of ``rollout`` only, when given), oldest
    first, with a line per version shown whose older intervals fell off (their Rollouts
    are not recorded); an empty string when none ever served."""
    rows = _rows(versions, rollout)
    shown = {r[0] for _, r in rows}
    notes = [
        f"{mv.spec.version}: " + older(mv.status.older_serving_history, "intervals")
        for mv in versions
        if older(mv.status.older_serving_history, "intervals")
        and (rollout is None or mv.spec.version in shown)
    ]
    if not rows and not notes:
        return ""
    text = _table([HEADER, *(r for _, r in rows)]) if rows else ""
    return "\n".join([t for t in (text, *notes) if t])
