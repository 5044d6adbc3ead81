"""The API models: the CRDs in crds/ are exactly what the models generate, every string
and list is bounded, and the operator's models parse what the API server accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cases.api_cases import INVALID, ROLLOUT_NAME_MAX, VALID, Case
from ferryman.api import approval, crds, names
from ferryman.api.common import cel_str
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout

ROOT = Path(__file__).resolve().parents[2]


def test_crds_on_disk_match_the_models() -> None:
    for name, doc in crds.documents().items():
        on_disk = (ROOT / "crds" / name).read_text()
        assert on_disk == crds.render(doc), f"crds/{name} is stale: run `make crds`"


def test_approval_policy_on_disk_matches_the_generator() -> None:
    """crds/policies/ (the ModelApproval admission policy and binding) drift like a CRD,
    and `python -m ferryman.api.crds --check` sees it."""
    for name, doc in approval.policy_documents().items():
        on_disk = (ROOT / "crds" / "policies" / name).read_text()
        assert on_disk == crds.render(doc), f"crds/policies/{name} is stale: run `make crds`"
    assert crds.main(["--check", "--out", str(ROOT / "crds")]) == 0


def test_generated_schemas_are_structural() -> None:
    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            assert "$ref" not in node and "anyOf" not in node and "const" not in node, path
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    for name, doc in crds.documents().items():
        walk(doc, name)


def test_bounds_checker_reports_unbounded_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "l": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            "m": {"type": "object", "additionalProperties": {"type": "integer"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "ok": {"type": "string", "enum": ["a"]},
        },
    }
    assert crds.unbounded(schema) == [".s", ".l", ".m"]


def test_short_names_and_columns() -> None:
    docs = {d["spec"]["names"]["kind"]: d for d in crds.documents().values()}
    assert docs["ModelVersion"]["spec"]["names"]["shortNames"] == ["mv"]
    assert docs["Rollout"]["spec"]["names"]["shortNames"] == ["mro"]
    for d in docs.values():
        assert d["spec"]["names"]["categories"] == ["ferryman"]
    columns = [
        c["name"] for c in docs["Rollout"]["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert columns == [
        "Model",
        "Stable",
        "Candidate",
        "Weight",
        "Phase",
        "Available",
        "Step",
        "Pause",
        "Message",
        "Age",
    ]
    pause = docs["Rollout"]["spec"]["versions"][0]["additionalPrinterColumns"][-3]
    assert (pause["jsonPath"], pause["priority"]) == (".status.pause.reason", 1)  # -o wide
    message = docs["Rollout"]["spec"]["versions"][0]["additionalPrinterColumns"][-2]
    assert (message["jsonPath"], message["priority"]) == (".status.message", 1)  # -o wide


def test_cel_string_literal_escapes_backslashes_and_quotes() -> None:
    assert cel_str(r"^a\.b$") == r"'^a\\.b$'"
    assert cel_str("it's") == r"'it\'s'"


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_operator_models_parse_every_valid_edge_case(case: Case) -> None:
    model = ModelVersion if case.manifest["kind"] == "ModelVersion" else Rollout
    parsed = model.model_validate(case.manifest)
    # Round trip: what the operator would write back is what the user wrote.
    dumped = parsed.spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped == case.manifest["spec"]


def test_examples_parse_with_the_models() -> None:
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ModelVersion":
                ModelVersion.model_validate(doc)
            elif doc and doc.get("kind") == "Rollout":
                Rollout.model_validate(doc)


NAME_CASES = [c for c in INVALID if " name must be" in c.message]


def _name_rules(case: Case) -> names.NameRules:
    return names.MODEL_VERSION if case.manifest["kind"] == "ModelVersion" else names.ROLLOUT


@pytest.mark.parametrize("case", NAME_CASES, ids=lambda c: c.name)
def test_operator_refuses_the_names_the_api_server_refuses(case: Case) -> None:
    found = names.problem(_name_rules(case), case.manifest["metadata"]["name"])
    assert found is not None and case.message in found


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_operator_accepts_every_valid_name(case: Case) -> None:
    assert names.problem(_name_rules(case), case.manifest["metadata"]["name"]) is None


def test_rollout_names_leave_room_for_every_suffix() -> None:
    assert names.ROLLOUT_NAME_MAX == ROLLOUT_NAME_MAX == 63 - len("-preview")
    longest = "r" * names.ROLLOUT_NAME_MAX
    for suffix in names.ROLLOUT_SUFFIXES:
        assert names.problem(names.MODEL_VERSION, longest + suffix) is None  # a Service name


def test_crds_check_names_at_creation_only() -> None:
    for doc in crds.documents().values():
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        if doc["spec"]["names"]["kind"] == approval.KIND:
            # A ModelApproval's name names nothing ferryman derives: any object name.
            assert "x-kubernetes-validations" not in schema
            continue
        # The name rules; a Rollout's GAMMA parent rule reads the name too, always.
        rules = [
            r for r in schema["x-kubernetes-validations"] if r["fieldPath"] == ".metadata.name"
        ]
        assert len(rules) == 2 and all(r["optionalOldSelf"] for r in rules)
        assert all(r["rule"].startswith("oldSelf.hasValue() || ") for r in rules)
        assert schema["properties"]["metadata"]["properties"]["name"]["maxLength"] == 253
