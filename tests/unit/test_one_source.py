"""One spelling per fact: the duration grammar (the CRD's pattern and the parser), the
measurement field bounds (the CRD's maxLength and the clip where a measurement is
built). The action annotation keys: ``ferryman.api.annotations``, checked against the
Lua in ``test_argocd.py``."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.api.common import DURATION, DURATION_SECONDS
from ferryman.api.rollout import Measurement, Verdict, action_key
from ferryman.api.rollout_limits import (
    MAX_ACTION_ID,
    MAX_ACTION_NAME,
    MAX_MEASUREMENT_MESSAGE,
    MAX_METRIC_NAME,
    MAX_METRIC_QUERY,
    MAX_QUERY,
    MAX_THRESHOLD,
)
from ferryman.plan import machine
from ferryman.plan.decision import Action
from ferryman.plan.durations import parse_duration
from unit.machine_sim import T0, Sim, canary_spec

CRD = Path(__file__).resolve().parents[2] / "crds" / "rollouts.ferryman.dev.yaml"
SCHEMA: dict[str, Any] = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"
]["properties"]

PART = st.tuples(
    st.integers(0, 10_000),
    st.one_of(st.none(), st.integers(0, 999).map(str)),
    st.sampled_from(sorted(DURATION_SECONDS)),
)
WELL_FORMED = st.lists(PART, min_size=1, max_size=4).map(
    lambda parts: "".join(f"{n}{'.' + f if f else ''}{u}" for n, f, u in parts)
)
# Anything near the grammar: digits, dots, unit letters and a few that are not.
NEAR = st.text(alphabet="0123456789.mshd x-", max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.one_of(WELL_FORMED, NEAR))
def test_the_crd_pattern_and_the_parser_agree(text: str) -> None:
    """A string the CRD's pattern admits parses; one it refuses does not."""
    admitted = re.fullmatch(DURATION, text) is not None
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert admitted == parsed, text


@settings(max_examples=200, deadline=None)
@given(st.lists(PART, min_size=1, max_size=4))
def test_parsed_value_is_the_sum_of_its_parts(parts: list[tuple[int, str | None, str]]) -> None:
    text = "".join(f"{n}{'.' + f if f else ''}{u}" for n, f, u in parts)
    want = sum(float(f"{n}.{f}" if f else n) * DURATION_SECONDS[u] for n, f, u in parts)
    assert parse_duration(text) == timedelta(seconds=want)


def test_the_crds_use_the_one_duration_pattern() -> None:
    text = CRD.read_text()
    assert "matches(" in text and DURATION.replace("\\", "\\\\") in text
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)


MEASUREMENT = SCHEMA["status"]["properties"]["analysis"]["properties"]["measurements"]["items"]
METRIC = SCHEMA["spec"]["properties"]["analysis"]["properties"]["metrics"]["items"]


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("metric", MAX_METRIC_NAME),
        ("query", MAX_QUERY),
        ("threshold", MAX_THRESHOLD),
        ("message", MAX_MEASUREMENT_MESSAGE),
    ],
)
def test_measurement_bounds_are_the_crds_and_the_clip(field: str, limit: int) -> None:
    assert MEASUREMENT["properties"][field]["maxLength"] == limit
    m = Measurement.model_validate(
        {"metric": "m", "verdict": Verdict.ERROR, "at": T0, field: "y" * (limit * 3)}
    )
    assert len(getattr(m, field)) == limit


def test_a_spec_metric_always_fits_its_measurement() -> None:
    """The measurement's metric is the spec's metric name, never clipped; the rendered
    query has room for the written one."""
    assert METRIC["properties"]["name"]["maxLength"] == MAX_METRIC_NAME
    assert METRIC["properties"]["query"]["maxLength"] == MAX_METRIC_QUERY <= MAX_QUERY


def test_last_action_bounds_are_the_crds_and_the_clip() -> None:
    """A free-text action name and a long nonce are recorded within the CRD's bounds."""
    last_action = SCHEMA["status"]["properties"]["lastAction"]["properties"]
    assert last_action["action"]["maxLength"] == MAX_ACTION_NAME
    assert last_action["id"]["maxLength"] == MAX_ACTION_ID
    sim = Sim(canary_spec([{"setWeight": 50}]))
    sim.run_until(lambda s: s.status.stable_version is not None)
    d = machine.decide(
        sim.spec,
        sim.status,
        replace(sim.observed(), action=Action("x" * 100, action_key("n" * 300))),
    )
    last = d.status.last_action
    assert last is not None and last.result == "Rejected"
    assert len(last.action) == MAX_ACTION_NAME and last.id == action_key("n" * 300)
    assert len(last.id) <= MAX_ACTION_ID


def test_a_models_last_outcome_holds_any_history_reason() -> None:
    """``lastOutcome.reason`` is the history entry's reason copied whole (plan.roles):
    a reason at the history's bound fits the ModelVersion's field and its CRD schema (a
    smaller bound there made the API server refuse the ModelVersion's status write)."""
    from ferryman.api.modelversion import LastOutcome
    from ferryman.api.rollout import HistoryEntry
    from ferryman.api.rollout_limits import MAX_REASON

    entry = HistoryEntry.model_validate(
        {"version": "1.1.0", "outcome": "RolledBack", "at": T0, "reason": "r" * MAX_REASON}
    )
    assert LastOutcome.model_validate({"outcome": "RolledBack", "reason": entry.reason})
    crd = yaml.safe_load(
        (Path(__file__).parents[2] / "crds" / "modelversions.ferryman.dev.yaml").read_text()
    )
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    reason = status["properties"]["lastOutcome"]["properties"]["reason"]
    assert reason["maxLength"] == MAX_REASON == len(entry.reason)
