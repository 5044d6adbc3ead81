"""The chart's CRD templates are exactly what ``hack/chart_crds.py`` renders from
``crds/`` (run ``make chart-crds``, or ``make crds`` which does both)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_crds", ROOT / "hack" / "chart_crds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crd_templates_match_crds() -> None:
    out = ROOT / "charts" / "ferryman" / "templates" / "crds"
    rendered: dict[str, str] = _generator().render_all()
    sources = [*(ROOT / "crds").glob("*.yaml"), *(ROOT / "crds" / "policies").glob("*.yaml")]
    assert sorted(rendered) == sorted(p.name for p in sources)
    assert sorted(p.name for p in out.glob("*.yaml")) == sorted(rendered), (
        "charts/ferryman/templates/crds/ is stale: run `make chart-crds`"
    )
    for name, text in rendered.items():
        assert (out / name).read_text() == text, (
            f"templates/crds/{name} is stale: run `make chart-crds`"
        )


def test_template_delimiters_in_crds_stay_literal() -> None:
    escape = _generator()._escape
    assert escape("a {{model}} b }}}") == "a {{`{{`}}model{{`}}`}} b {{`}}`}}}"


def test_a_crd_label_the_chart_would_override_is_refused() -> None:
    doc = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "x.ferryman.dev", "labels": {"app.kubernetes.io/name": "other"}},
        "spec": {},
    }
    with pytest.raises(ValueError, match=r"app.kubernetes.io/name would be overridden"):
        _generator().template("x.yaml", doc)


def test_generated_crds_hold_no_empty_map_or_list_the_server_would_drop() -> None:
    """The API server omits empty maps and lists of a CRD's schema; one left in crds/
    makes the applied CRD differ from the live one forever (server-side apply conflicts
    between kubectl and helm, a permanent diff in Argo CD). ``subresources.status: {}``
    is the one empty object the API keeps."""
    found = []
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        stack: list[tuple[str, object]] = [(path.name, yaml.safe_load(path.read_text()))]
        while stack:
            where, node = stack.pop()
            if isinstance(node, dict):
                if not node and not where.endswith(".subresources.status"):
                    found.append(where)
                stack.extend((f"{where}.{k}", v) for k, v in node.items())
            elif isinstance(node, list):
                if not node:
                    found.append(where)
                stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node))
    assert found == []
