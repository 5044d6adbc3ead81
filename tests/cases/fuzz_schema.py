"""The edges the fuzzer aims at, read from the generated CRDs (``crds/*.yaml``) rather
than written down a second time: ``maxLength``, ``minLength``, ``minimum``, ``maximum``,
``maxItems``, ``minItems``, ``maxProperties``, ``enum`` and ``required`` of any field, the
name-length bounds and URI schemes in the CEL rules, and every field path a mutation can
aim at. A change of the models (and ``make crds``) moves the edges the fuzzer tries.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
KINDS = ("ModelVersion", "Rollout")
Schema = dict[str, Any]


@functools.cache
def root(kind: str) -> Schema:
    """The openAPIV3Schema of ``kind`` (ModelVersion or Rollout)."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return schema
    raise LookupError(f"no CRD for kind {kind} in {CRD_DIR}")


def at(kind: str, path: str) -> Schema:
    """The schema node of ``path``, dotted from the root: ``spec.strategy.canary.steps[]``
    (``[]`` an array's items, ``{}`` a map's values)."""
    node = root(kind)
    for part in re.findall(r"[^.\[\]{}]+|\[\]|\{\}", path):
        if part == "[]":
            node = node["items"]
        elif part == "{}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


def with_defaults(kind: str, spec: Any) -> Any:
    """``spec`` as the API server stores it: every ``default`` of the CRD's schema filled
    in where the field is absent, in objects that are present (structural defaulting,
    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting).
    """
    return _defaulted(at(kind, "spec"), spec)


def _defaulted(node: Schema, value: Any) -> Any:
    if isinstance(value, dict):
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        out = {
            k: _defaulted(props[k], v)
            if k in props
            else (_defaulted(extra, v) if isinstance(extra, dict) else v)
            for k, v in value.items()
        }
        for k, sub in props.items():
            if k not in out and "default" in sub:
                out[k] = sub["default"]
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_defaulted(node["items"], v) for v in value]
    return value


def bound(kind: str, path: str, key: str) -> Any:
    """One keyword of a field's schema, e.g. ``bound("Rollout", "spec.replicas",
    "maximum")``; KeyError when the schema has no such bound."""
    return at(kind, path)[key]


def name_max(kind: str) -> int:
    """The longest ``metadata.name`` the CRD's root CEL rule allows."""
    for rule in root(kind).get("x-kubernetes-validations", []):
        found = re.search(r"size\(self\.metadata\.name\) <= (\d+)", rule["rule"])
        if found:
            return int(found.group(1))
    raise LookupError(f"{kind}: no name-length rule")


def uri_schemes() -> tuple[str, ...]:
    """The artifact URI schemes the ModelVersion CRD's CEL rule allows."""
    for rule in at("ModelVersion", "spec.artifact.uri")["x-kubernetes-validations"]:
        found = re.search(r"\^\(([a-z0-9|]+)\)://", rule["rule"])
        if found:
            return tuple(found.group(1).split("|"))
    raise LookupError("no URI scheme rule")


def duration_units() -> tuple[str, ...]:
    """The units of the duration pattern (``ms``, ``s``, ``m``, ``h``)."""
    rule = at("Rollout", "spec.bake.duration")["x-kubernetes-validations"][0]["rule"]
    found = re.search(r"\(((?:[a-z]+\|)+[a-z]+)\)", rule)
    assert found, rule
    return tuple(found.group(1).split("|"))


@dataclass(frozen=True)
class Field:
    """One field of a kind's schema: its dotted path (``[]`` for array items, ``{}`` for
    map values) and its schema node."""

    path: str
    schema: Schema

    @property
    def key(self) -> str:
        """The field's own name (the last named part of the path)."""
        return [p for p in re.split(r"[.\[\]{}]+", self.path) if p][-1]


@functools.cache
def fields(kind: str) -> tuple[Field, ...]:
    """Every field under ``spec`` that the schema describes (free-form objects are
    leaves)."""
    out: list[Field] = []

    def walk(node: Schema, path: str) -> None:
        out.append(Field(path, node))
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + "{}")

    walk(at(kind, "spec"), "spec")
    return tuple(out)
