"""The chart's metadata and documentation agree with the rest of the repository: its
version is the package's, every value is described in values.schema.json, and the values
reference in docs/install.md is what ``make chart-docs`` generates from the schema."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ferryman"


def _doc_generator() -> ModuleType:
    path = ROOT / "hack" / "chart_values_doc.py"
    spec = importlib.util.spec_from_file_location("chart_values_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_version_and_app_version_are_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["name"] == "ferryman"
    assert chart["version"] == package
    assert chart["appVersion"] == package


def test_install_doc_values_reference_matches_the_schema() -> None:
    gen = _doc_generator()
    doc = (ROOT / "docs" / "install.md").read_text()
    assert gen.BEGIN in doc and gen.END in doc
    assert gen.replace_section(doc) == doc, (
        "docs/install.md's values reference differs from values.schema.json: run `make chart-docs`"
    )


def test_every_value_is_in_the_schema_with_a_description() -> None:
    gen = _doc_generator()
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = gen.rows(schema, values)
    undocumented = [key for key, _kind, _default, text in rows if not text]
    assert undocumented == []
    documented = {key for key, *_ in rows}

    def leaves(node: Any, path: list[str]) -> list[str]:
        if isinstance(node, dict) and node and ".".join(path) not in documented:
            return [leaf for k, v in node.items() for leaf in leaves(v, [*path, k])]
        return [".".join(path)]

    missing = [leaf for leaf in leaves(values, []) if leaf not in documented]
    assert missing == [], f"values.yaml keys without a schema row: {missing}"


def test_a_changed_description_is_detected() -> None:
    gen = _doc_generator()
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    before = gen.rows(schema, values)
    schema["properties"]["replicas"]["description"] = "something else"
    assert gen.rows(schema, values) != before
