"""Labels, annotations and ownership that every child object carries.

Labels carry only what selectors need: the model, the version (sanitized: a semver with
build metadata such as ``1.3.0-rc.1+build.5`` is not a valid label value) and the
Rollout. Lineage is free text, so it goes to annotations.
"""

from __future__ import annotations

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

_INVALID = re.compile(r"[^A-Za-z0-9._-]")


def label_value(text: str) -> str:
    """A valid label value for ``text``: at most 63 characters of [A-Za-z0-9._-],
    starting and ending alphanumeric (``+`` of semver build metadata becomes ``_``)."""
    value = _INVALID.sub("_", text)[:63]
    return value.strip("._-")


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
