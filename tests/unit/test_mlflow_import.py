"""The MLflow record -> ModelVersion mapping (``plan.mlflow``), pure: names, the artifact
URI and digest, lineage (git commit, datasets, DVC), metrics and params, and the
re-import verdict. Every manifest it builds is checked against the ModelVersion model
(the CRD's source); the API server's own checks are the e2e's (test_mlflow_import)."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from ferryman.api.modelversion import ModelVersion
from ferryman.cli import _parser, render
from ferryman.plan import labels
from ferryman.plan import mlflow as m

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
MD5 = "0123456789abcdef0123456789abcdef"

VERSION_JSON: dict[str, Any] = {
    "name": "fraud",
    "version": "3",
    "run_id": "8c1f00aa",
    "source": "models:/m-1",
    "user_id": "ana@acme.example",
    "tags": [{"key": "team", "value": "risk"}],
}
RUN_JSON: dict[str, Any] = {
    "info": {"run_id": "8c1f00aa", "experiment_id": "1"},
    "data": {
        "metrics": [
            {"key": "auc", "value": 0.91, "step": 0, "timestamp": 1},
            {"key": "auc", "value": 0.94, "step": 1, "timestamp": 2},
            {"key": "loss", "value": float("nan"), "step": 0, "timestamp": 1},
        ],
        "params": [
            {"key": "learning_rate", "value": "2e-5"},
            {"key": "dvc.repo", "value": "https://git.acme.example/data.git"},
        ],
        "tags": [
            {"key": "mlflow.source.git.commit", "value": "a1b2c3d4"},
            {"key": "dvc.rev", "value": "f00dbabe"},
            {"key": "dvc.path", "value": "data/transactions.csv"},
            {"key": "dvc.md5", "value": MD5},
        ],
    },
    "inputs": {
        "dataset_inputs": [
            {
                "tags": [{"key": "mlflow.data.context", "value": "training"}],
                "dataset": {
                    "name": "transactions",
                    "digest": "5e1f",
                    "source_type": "local",
                    "source": json.dumps({"uri": "data/transactions.csv"}),
                },
            }
        ]
    },
}


def build(
    version: dict[str, Any] | None = None, run: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        version=m.RegistryVersion.from_json(version or VERSION_JSON),
        run=m.Run.from_json(run or RUN_JSON),
        location="mlflow-artifacts:/1/models/m-1/artifacts",
        uri="s3://mlflow/1/models/m-1/artifacts",
        digest=DIGEST,
        serving={"image": "ghcr.io/acme/mlserver:1.6"},
        tracking_uri="http://127.0.0.1:5000",
    )
    args.update(kw)
    return m.manifest(**args)


def test_a_registered_version_becomes_a_valid_model_version_with_lineage_and_metrics() -> None:
    mv = build()
    parsed = ModelVersion.model_validate(mv)  # the CRD's source accepts it
    assert mv["metadata"]["name"] == "fraud-3-0-0"
    assert (parsed.spec.model, parsed.spec.version) == ("fraud", "3.0.0")
    assert parsed.spec.artifact.uri == "s3://mlflow/1/models/m-1/artifacts"
    assert parsed.spec.artifact.digest == DIGEST and parsed.spec.artifact.format == "mlflow"
    lin = parsed.spec.lineage
    assert lin is not None and lin.data is not None and lin.data.dvc is not None
    assert lin.training_run == "mlflow://runs/8c1f00aa" and lin.code_commit == "a1b2c3d4"
    # DVC: the repo from a param, the rest from tags (a tag wins over a param).
    assert lin.data.dvc.model_dump() == {
        "repo": "https://git.acme.example/data.git",
        "rev": "f00dbabe",
        "path": "data/transactions.csv",
        "md5": MD5,
    }
    assert lin.data.datasets is not None
    assert lin.data.datasets[0].model_dump(exclude_none=True) == {
        "name": "transactions",
        "digest": "5e1f",
        "source_type": "local",
        "source": "data/transactions.csv",
        "context": "training",
    }
    assert lin.data_version == "transactions@5e1f"
    # The latest value of each metric; NaN is dropped (not JSON, no gate could use it).
    assert parsed.spec.metrics == {"auc": 0.94}
    assert parsed.spec.hyperparameters == {"learning_rate": "2e-5"}  # dvc.* is lineage
    assert parsed.spec.owner == "ana@acme.example"
    assert mv["metadata"]["annotations"][m.ANNOTATION_MODEL] == "fraud"
    assert mv["metadata"]["annotations"][m.ANNOTATION_VERSION] == "3"
    # The served Deployment carries the DVC record too.
    annotations = labels.lineage_annotations(parsed)
    assert annotations["ferryman.dev/data-dvc"] == (
        f"https://git.acme.example/data.git@f00dbabe:data/transactions.csv md5={MD5}"
    )


def test_lineage_table_shows_the_dvc_record() -> None:
    text = render.lineage([ModelVersion.model_validate(build())])
    header, row = text.splitlines()[:2]
    assert "DVC DATA" in header
    assert f"data/transactions.csv@f00dbabe md5:{MD5[:12]}" in row
    assert "3.0.0: repo https://git.acme.example/data.git rev f00dbabe" in text


@pytest.mark.parametrize(
    "registered, expected",
    [
        ("fraud", "fraud"),
        (
            "Fraud Detector",
            "fraud-detector-" + hashlib.sha256(b"Fraud Detector").hexdigest()[:10],
        ),
        ("team.fraud_v2", "team-fraud-v2-" + hashlib.sha256(b"team.fraud_v2").hexdigest()[:10]),
    ],
)
def test_model_names_are_dns_labels_and_distinct(registered: str, expected: str) -> None:
    assert m.model_name(registered) == expected
    assert m.model_name("fraud-detector") != m.model_name("Fraud Detector")
    assert len(m.model_name("x" * 300)) <= 63


def test_object_names_are_valid_for_long_and_digit_first_models() -> None:
    from ferryman.api import names

    for model, version in (("a" * 63, "12.0.0"), ("3d-model", "1.0.0"), ("fraud", "7.0.0")):
        name = m.object_name(model, version)
        assert names.problem(names.MODEL_VERSION, name) is None, name
    assert m.object_name("fraud", "7.0.0") == "fraud-7-0-0"
    assert m.object_name("a" * 63, "1.0.0") != m.object_name("a" * 63, "2.0.0")


@pytest.mark.parametrize("version", ["0", "01", "v1", "1.2", ""])
def test_only_positive_integer_versions(version: str) -> None:
    with pytest.raises(m.Refused):
        m.semver_of(version)


def test_artifact_locations_map_to_uris_the_initializer_reads() -> None:
    maps = [("mlflow-artifacts:/", "pvc://mlflow/"), ("mlflow-artifacts:/9/", "s3://nine/")]
    loc = "mlflow-artifacts:/1/models/m-1/artifacts"
    assert m.serving_uri(loc, maps) == "pvc://mlflow/1/models/m-1/artifacts"
    # The tracking server's host is not part of the location; the longest prefix wins.
    assert m.serving_uri("mlflow-artifacts://h:5000/9/x", maps) == "s3://nine/x"
    assert m.serving_uri("s3://bucket/1/x/artifacts", []) == "s3://bucket/1/x/artifacts"
    for unreadable in ("mlflow-artifacts:/1/x", "file:///srv/mlruns/1/x", "/srv/mlruns/1/x"):
        with pytest.raises(m.Refused, match="--artifact-map"):
            m.serving_uri(unreadable, [])
    with pytest.raises(m.Refused):
        m.parse_map("no-equals-sign")


def test_digest_tag_is_taken_when_well_formed() -> None:
    tagged = m.RegistryVersion.from_json(
        {**VERSION_JSON, "tags": [{"key": m.TAG_DIGEST, "value": DIGEST}]}
    )
    assert m.tagged_digest(tagged) == DIGEST
    assert m.tagged_digest(m.RegistryVersion.from_json(VERSION_JSON)) is None
    bad = m.RegistryVersion.from_json(
        {**VERSION_JSON, "tags": [{"key": m.TAG_DIGEST, "value": "md5:x"}]}
    )
    with pytest.raises(m.Refused):
        m.tagged_digest(bad)


def test_partial_or_malformed_dvc_lineage_is_refused() -> None:
    partial = copy.deepcopy(RUN_JSON)
    partial["data"]["tags"] = [t for t in partial["data"]["tags"] if t["key"] != "dvc.rev"]
    with pytest.raises(m.Refused, match=r"without dvc\.rev"):
        build(run=partial)
    bad = copy.deepcopy(RUN_JSON)
    bad["data"]["tags"][-1]["value"] = "not-an-md5"
    with pytest.raises(m.Refused, match="not a DVC md5"):
        build(run=bad)
    directory = copy.deepcopy(RUN_JSON)
    directory["data"]["tags"][-1]["value"] = MD5 + ".dir"
    assert ModelVersion.model_validate(build(run=directory))


def test_no_run_and_no_data_leave_only_the_run_link() -> None:
    bare: dict[str, Any] = {"info": {"run_id": "r1"}, "data": {}}
    spec = build(run=bare)["spec"]
    assert spec["lineage"] == {"trainingRun": "mlflow://runs/8c1f00aa"}
    assert "metrics" not in spec and "hyperparameters" not in spec
    only_dvc = copy.deepcopy(RUN_JSON)
    only_dvc["inputs"] = {}
    assert (
        build(run=only_dvc)["spec"]["lineage"]["dataVersion"] == f"data/transactions.csv@{MD5[:12]}"
    )


def test_metric_selection_and_bounds() -> None:
    assert build(metrics=["auc"])["spec"]["metrics"] == {"auc": 0.94}
    many = copy.deepcopy(RUN_JSON)
    many["data"]["metrics"] = [{"key": f"m{i}", "value": 1.0} for i in range(m.MAX_METRICS + 1)]
    with pytest.raises(m.Refused, match="--metric"):
        build(run=many)
    assert len(build(run=many, metrics=["m1", "m2"])["spec"]["metrics"]) == 2


def present(mv: dict[str, Any], name: str, created: str) -> dict[str, Any]:
    out = copy.deepcopy(mv)
    out["metadata"].update(name=name, creationTimestamp=created)
    return out


def test_reimport_is_a_noop_and_another_artifact_is_refused() -> None:
    mv = build()
    assert m.verdict(mv, []).create
    unrelated = build(version={**VERSION_JSON, "version": "4"})
    assert m.verdict(mv, [unrelated]).create
    same = m.verdict(mv, [present(mv, "fraud-3-0-0", "2026-12-01T00:00:00Z")])
    assert (same.create, same.existing, same.differences) == (False, "fraud-3-0-0", ())
    # Metrics logged after the import: kept as imported, and said so.
    later = copy.deepcopy(RUN_JSON)
    later["data"]["metrics"].append({"key": "recall", "value": 0.6})
    again = m.verdict(build(run=later), [present(mv, "fraud-3-0-0", "2026-12-01T00:00:00Z")])
    assert (again.create, again.differences) == (False, ("metrics",))
    changed = build(digest=OTHER)
    with pytest.raises(m.Refused, match="Duplicate"):
        m.verdict(changed, [present(mv, "fraud-3-0-0", "2026-12-01T00:00:00Z")])
    # A hand-written ModelVersion of the same model and version counts as well: the
    # oldest is the one the operator registers.
    hand = present(build(digest=OTHER), "fraud-by-hand", "2026-11-01T00:00:00Z")
    with pytest.raises(m.Refused, match="fraud-by-hand"):
        m.verdict(mv, [present(mv, "fraud-3-0-0", "2026-12-01T00:00:00Z"), hand])


def test_import_arguments() -> None:
    args = _parser().parse_args(
        [
            "import",
            "mlflow",
            "Fraud",
            "@champion",
            "--tracking-uri",
            "http://127.0.0.1:1",
            "--image",
            "img",
            "--artifact-map",
            "mlflow-artifacts:/=pvc://mlflow/",
            "-n",
            "risk",
        ]
    )
    assert (args.command, args.registry, args.model, args.version) == (
        "import",
        "mlflow",
        "Fraud",
        "@champion",
    )
    assert args.artifact_map == ["mlflow-artifacts:/=pvc://mlflow/"] and args.namespace == "risk"


def test_follow_imports_each_version_the_alias_points_to_and_survives_failures() -> None:
    from ferryman.cli import mlflow as cli_mlflow

    args = _parser().parse_args(
        ["import", "mlflow", "fraud", "@champion", "--follow", "--interval", "5", "--polls", "6"]
    )
    pointed = iter(["2", "2", "3", "3", "boom", "4"])
    imported: list[str] = []
    slept: list[float] = []
    said: list[str] = []
    current = {"v": ""}

    def resolve() -> str:
        current["v"] = next(pointed)
        if current["v"] == "boom":
            raise cli_mlflow.MlflowError("cannot reach the tracking server")
        return current["v"]

    def once() -> int:
        imported.append(current["v"])
        if current["v"] == "3":
            raise m.Refused("another artifact")
        return 0

    code = cli_mlflow.follow(args, once, resolve, said.append, sleep=slept.append)
    assert imported == ["2", "3", "4"]  # once per version the alias moved to
    assert slept == [5.0] * 5  # bounded: 6 looks, no sleep after the last
    assert code == 0
    assert any("another artifact" in x for x in said) and any("cannot reach" in x for x in said)
    with pytest.raises(m.Refused, match="alias"):
        cli_mlflow.follow(
            _parser().parse_args(["import", "mlflow", "fraud", "3", "--follow"]),
            once,
            resolve,
            said.append,
        )
