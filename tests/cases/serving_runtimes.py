"""The model-server examples (examples/serving/*.yaml) and what ferryman renders for each:
shared by the golden-file unit test and the e2e test that has the API server validate
the rendered objects.

Each example is served by a fixed Rollout of its model (Gateway API routing, service
port 80) with a fixed storage initializer image, so the rendering is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cases.api_cases import rollout
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.plan import serving

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "serving"
GOLDEN = ROOT / "tests" / "unit" / "golden" / "serving"
NAMESPACE = "ml"
INIT_IMAGE = "ghcr.io/ferryman-dev/ferryman:0.0.0"
RUNTIMES = tuple(sorted(p.stem for p in EXAMPLES.glob("*.yaml")))


def manifest(runtime: str) -> dict[str, Any]:
    """The example ModelVersion of ``runtime`` as written in examples/serving/."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{runtime}.yaml").read_text())
    return doc


def serving_rollout(model: str) -> Rollout:
    r = rollout(name=model)
    r["metadata"].update(namespace=NAMESPACE, uid="00000000-0000-4000-8000-000000000000")
    r["spec"]["model"] = model
    return Rollout.model_validate(r)


def rendered(runtime: str) -> list[dict[str, Any]]:
    """The Deployment (one replica) and Service ferryman renders for the example."""
    mv = ModelVersion.model_validate(manifest(runtime))
    mv.metadata.namespace = NAMESPACE
    ro = serving_rollout(mv.spec.model)
    return [
        serving.deployment(mv, ro, replicas=1, init_image=INIT_IMAGE),
        serving.service(mv, ro),
    ]
