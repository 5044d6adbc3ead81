"""Labels, annotations and ownership that every child object carries.

Labels carry only what selectors need: the model, the version (sanitized: a semver with
build metadata such as ``1.3.0-rc.1+build.5`` is not a valid label value) and the
Rollout. Lineage is free text, so it goes to annotations.

Label values must be unique for distinct inputs, or two versions' Services select each
other's pods. Every selector and every pod label goes through ``label_value``, which is
injective: a text that is already a label value once ``+`` reads ``_`` keeps exactly those
bytes (so existing Deployments, whose selectors are immutable, keep matching); any other
text (too long, or needing more than that to be valid) gets a truncated readable prefix
and a hash of the whole text.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ferryman.api.common import API_VERSION
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import KIND as ROLLOUT_KIND
from ferryman.api.rollout import Rollout

PREFIX = "ferryman.dev"
MODEL = f"{PREFIX}/model"
VERSION = f"{PREFIX}/version"
ROLLOUT = f"{PREFIX}/rollout"
MANAGED_BY = "app.kubernetes.io/managed-by"

LABEL_VALUE_MAX = 63
HASH_LENGTH = 10

_INVALID = re.compile(r"[^A-Za-z0-9._-]")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(text: str) -> str:
    """A valid label value for ``text`` (at most 63 characters of [A-Za-z0-9._-], starting
    and ending alphanumeric), distinct for distinct texts.

    ``1.3.0`` -> ``1.3.0``; ``1.3.0-rc.1+build.5`` -> ``1.3.0-rc.1_build.5`` (a text
    without ``_`` that is a label value once ``+`` becomes ``_`` keeps those bytes: ``+``
    and ``_`` never both occur in a semver, model or Rollout name). Any other text, e.g.
    a version longer than 63 characters, becomes the first characters of its sanitized
    form, ``-`` and the first 10 hex digits of the sha256 of the whole text.
    """
    kept = text.replace("+", "_")
    if "_" not in text and len(kept) <= LABEL_VALUE_MAX and _LABEL_VALUE.match(kept):
        return kept
    digest = hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]
    prefix = _INVALID.sub("_", text)[: LABEL_VALUE_MAX - HASH_LENGTH - 1].strip("._-")
    return f"{prefix}-{digest}" if prefix else digest


def version_labels(mv: ModelVersion, rollout_name: str) -> dict[str, str]:
    """The selector of one served version's pods."""
    return {
        MODEL: label_value(mv.spec.model),
        VERSION: label_value(mv.spec.version),
        ROLLOUT: label_value(rollout_name),
    }


def object_labels(mv: ModelVersion, rollout_name: str) -> dict[str, str]:
    return {**version_labels(mv, rollout_name), MANAGED_BY: "ferryman"}


def lineage_annotations(mv: ModelVersion) -> dict[str, str]:
    spec = mv.spec
    found = {
        f"{PREFIX}/model-version": mv.metadata.name,
        f"{PREFIX}/version": spec.version,
        f"{PREFIX}/artifact-uri": spec.artifact.uri,
        f"{PREFIX}/artifact-digest": spec.artifact.digest,
    }
    if spec.lineage:
        for key, value in (
            ("data-version", spec.lineage.data_version),
            ("code-commit", spec.lineage.code_commit),
            ("training-run", spec.lineage.training_run),
            ("parent", spec.lineage.parent),
        ):
            if value:
                found[f"{PREFIX}/{key}"] = value
        dvc = spec.lineage.data.dvc if spec.lineage.data else None
        if dvc is not None:
            found[f"{PREFIX}/data-dvc"] = f"{dvc.repo}@{dvc.rev}:{dvc.path} md5={dvc.md5}"
    return found


def owner_reference(rollout: Rollout) -> dict[str, Any]:
    """Owned by the Rollout: deleting it garbage-collects everything it created."""
    return {
        "apiVersion": API_VERSION,
        "kind": ROLLOUT_KIND,
        "name": rollout.metadata.name,
        "uid": rollout.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(obj: dict[str, Any], rollout: Rollout) -> bool:
    """Whether an existing object was created by ferryman for this Rollout (checked
    before every write: a same-named object of someone else is never taken over)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(
        r.get("kind") == ROLLOUT_KIND
        and r.get("apiVersion", "").startswith(f"{PREFIX}/")
        and r.get("uid") == rollout.metadata.uid
        for r in refs
    )
