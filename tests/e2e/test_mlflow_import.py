"""Issue 17 §1-2: versions registered in a real MLflow tracking server become
ModelVersions with lineage (run, Git commit, dataset input, DVC record) and metrics, and
are rolled out by the real operator.

The tracking server (``harness.mlflow``: PyPI ``mlflow``, sqlite backend, file artifact
store served by the server, 127.0.0.1) starts once for the module. A "training job" run
by MLflow's own client logs two runs against a DVC project made here (``git init``,
``dvc init``, ``dvc add``, commit: DVC computes the md5) and registers versions 1 and 2,
with the alias ``champion`` on 2; version 2 carries a ``ferryman.digest`` tag, version 1
none (its digest is computed from the files the server serves).

``kubectl ferryman import mlflow`` maps the server's ``mlflow-artifacts:/`` locations to
``pvc://mlflow-artifacts/`` (the file store as a claim). The rollout's pods are played
by ``harness.podrun.Kubelet``: the storage initializer runs as a process with the
rendered arguments and verifies the imported digest against the files in the store
(the claim is the artifact store's directory), so a wrong digest or URI would fail the
rollout. Re-import is a no-op; after the store's files change under version 1, its
re-import is refused.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import rollouts as r
from ferryman.storage import tree
from harness import mlflow, podrun
from harness.kube import Cluster, wait_for
from harness.operator import OperatorProcess

pytestmark = [pytest.mark.usefixtures("ferryman_crds"), pytest.mark.kwok]
CLAIM = "mlflow-artifacts"
MODEL = "fraud"
IMAGE = "ghcr.io/acme/mlserver:1.6"


@pytest.fixture(scope="module")
def pvc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stands for the init container's /mnt/pvc: the claim is the server's file store."""
    return tmp_path_factory.mktemp("pvc")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, pvc_root: Path
) -> Iterator[mlflow.TrackingServer]:
    with mlflow.tracking_server(tmp_path_factory.mktemp("mlflow"), pvc_root / CLAIM) as s:
        yield s


@pytest.fixture(scope="module")
def trained(
    server: mlflow.TrackingServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("training")
    dvc = mlflow.dvc_project(tmp / "data-project", ["amount,label", "12.5,0", "990.0,1"])
    models = []
    for n in (1, 2):
        d = tmp / f"model-{n}"
        (d / "weights").mkdir(parents=True)
        (d / "MLmodel").write_text(f"flavors: {{python_function: {{}}}}\nrun: {n}\n")
        (d / "weights" / "model.bin").write_bytes(bytes([n]) * 4096)
        models.append(d)
    digest2 = tree.digest_path(models[1])
    commit = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"

    def version(n: int, auc: float, **extra: Any) -> dict[str, Any]:
        return {
            "params": {"learning_rate": f"{n}e-5", "dvc.repo": f"file://{dvc.repo}"},
            "metrics": {"auc": auc, "recall": 0.5 + n / 10},
            "tags": {
                "mlflow.source.git.commit": commit,
                "dvc.rev": dvc.rev,
                "dvc.path": dvc.path,
                "dvc.md5": dvc.md5,
            },
            "data": str(dvc.repo / dvc.path),
            "dataset": "transactions",
            "model_dir": str(models[n - 1]),
            **extra,
        }

    registered = mlflow.train(
        server,
        {
            "experiment": "fraud",
            "model": MODEL,
            "alias": "champion",
            "versions": [
                version(1, 0.91),
                version(2, 0.94, version_tags={"ferryman.digest": digest2}),
            ],
        },
    )
    return {"dvc": dvc, "commit": commit, "registered": registered, "digest2": digest2}


def ferryman(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("ferryman", *args, check=False, timeout=120)


def import_args(server: mlflow.TrackingServer, ns: str, version: str) -> list[str]:
    return [
        "import",
        "mlflow",
        MODEL,
        version,
        f"--tracking-uri={server.uri}",
        f"--image={IMAGE}",
        f"--artifact-map=mlflow-artifacts:/=pvc://{CLAIM}/",
        "-n",
        ns,
    ]


def claim(cluster: Cluster, ns: str, root: Path) -> str:
    """A PersistentVolume pre-bound to claim CLAIM in ``ns`` (the scheduler places a pod
    only once its claim is Bound); its name, to delete (cluster-scoped)."""
    pv = f"{ns}-{CLAIM}"[:63]
    size = {"storage": "1Gi"}
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv},
                "spec": {
                    "capacity": size,
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": str(root / CLAIM)},
                    "claimRef": {"namespace": ns, "name": CLAIM},
                },
            }
        ]
    )
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": CLAIM},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": size},
                },
            }
        ],
        namespace=ns,
    )
    return pv


def test_mlflow_versions_import_with_lineage_and_roll_out(
    cluster: Cluster,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    server: mlflow.TrackingServer,
    trained: dict[str, Any],
    pvc_root: Path,
    tmp_path: Path,
) -> None:
    ns = namespace
    dvc: mlflow.DvcProject = trained["dvc"]
    run1, run2 = (v["run_id"] for v in trained["registered"])
    # A follower of @champion (2 now) imports 2 (its digest from the tag), then 1 when
    # the alias moves (no tag: computed over the files the server serves).
    follower = subprocess.Popen(
        [
            cluster.kubectl_bin,
            "ferryman",
            *import_args(server, ns, "@champion"),
            "--follow",
            "--interval=0.5",
            "--polls=400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cluster.env,
    )
    try:
        wait_for(
            lambda: cluster.get_json("modelversion", "fraud-2-0-0", ns) is not None,
            timeout=120,
            message="the follower imported version 2",
        )
        mlflow.set_alias(server, MODEL, "champion", "1")
        wait_for(
            lambda: cluster.get_json("modelversion", "fraud-1-0-0", ns) is not None,
            timeout=120,
            message="the follower imported version 1 when the alias moved",
        )
    finally:
        follower.terminate()
        followed = follower.communicate(timeout=30)[0]
    assert "modelversion.ferryman.dev/fraud-2-0-0 created" in followed, followed
    assert "alias @champion -> version 1" in followed, followed
    assert "modelversion.ferryman.dev/fraud-1-0-0 created" in followed, followed
    # Only version 1's digest was computed: version 2's came from its tag.
    assert followed.count("computing the digest") == 1, followed
    assert followed.index("computing") > followed.index("-> version 1"), followed

    mv1 = cluster.get_json("modelversion", "fraud-1-0-0", ns)
    mv2 = cluster.get_json("modelversion", "fraud-2-0-0", ns)
    assert mv1 is not None and mv2 is not None
    files1 = pvc_root / CLAIM / "1" / run1 / "artifacts" / "model"
    spec1 = mv1["spec"]
    assert (spec1["model"], spec1["version"]) == ("fraud", "1.0.0")
    assert spec1["artifact"] == {
        "uri": f"pvc://{CLAIM}/1/{run1}/artifacts/model",
        "digest": tree.digest_path(files1),
        "format": "mlflow",
    }
    assert mv2["spec"]["artifact"]["digest"] == trained["digest2"]
    assert spec1["metrics"] == {"auc": 0.91, "recall": 0.6}
    assert spec1["hyperparameters"] == {"learning_rate": "1e-5"}
    lineage = spec1["lineage"]
    assert lineage["trainingRun"] == f"mlflow://runs/{run1}"
    assert lineage["codeCommit"] == trained["commit"]
    assert lineage["data"]["dvc"] == {
        "repo": f"file://{dvc.repo}",
        "rev": dvc.rev,
        "path": dvc.path,
        "md5": dvc.md5,
    }
    (dataset,) = lineage["data"]["datasets"]
    assert dataset["name"] == "transactions" and dataset["context"] == "training"
    assert dataset["digest"] == trained["registered"][0]["dataset_digest"]
    assert lineage["dataVersion"] == f"transactions@{dataset['digest']}"
    assert mv1["metadata"]["annotations"]["mlflow.ferryman.dev/version"] == "1"
    annotations = mv2["metadata"]["annotations"]
    assert annotations["mlflow.ferryman.dev/imported-as-alias"] == "champion"
    assert annotations["mlflow.ferryman.dev/version"] == "2"
    assert mv2["spec"]["lineage"]["trainingRun"] == f"mlflow://runs/{run2}"

    # For a GitOps repository: the same ModelVersion printed, nothing created.
    printed = ferryman(cluster, *import_args(server, ns, "2"), "-o", "yaml")
    assert printed.returncode == 0, printed.stderr
    assert yaml.safe_load(printed.stdout)["spec"] == mv2["spec"]

    # Re-import by version number: a no-op (the object is not rewritten).
    before = mv1["metadata"]["resourceVersion"]
    again = ferryman(cluster, *import_args(server, ns, "1"))
    assert again.returncode == 0, again.stderr
    assert "fraud-1-0-0 unchanged" in again.stdout, again.stdout
    after = cluster.get_json("modelversion", "fraud-1-0-0", ns) or {}
    assert after["metadata"]["resourceVersion"] == before

    shown = ferryman(cluster, "lineage", "fraud", "-n", ns)
    assert shown.returncode == 0, shown.stderr
    assert f"{dvc.path}@{dvc.rev[:10]} md5:{dvc.md5[:12]}" in shown.stdout, shown.stdout
    assert f"1.0.0: repo file://{dvc.repo} rev {dvc.rev} path {dvc.path} md5 {dvc.md5}" in (
        shown.stdout
    )

    # The rollout: the operator serves the imported versions; the played kubelet's
    # storage initializer verifies each imported digest against the store.
    pv = claim(cluster, ns, pvc_root)
    try:
        settings = tmp_path / "settings.json"
        settings.write_text('{"storageInitializerImage": "ghcr.io/ferryman-dev/ferryman:test"}')
        operator_factory(args=[f"--settings={settings}"]).start()
        (tmp_path / "kubelet").mkdir()
        kubelet = podrun.Kubelet(
            cluster,
            ns,
            tmp_path / "kubelet",
            claims={CLAIM: pvc_root / CLAIM},
            image_paths={"/mnt/pvc": pvc_root},
        )
        try:
            cluster.apply(
                r.rollout(
                    "1.0.0",
                    replicas=1,
                    template={"podAnnotations": {podrun.TEST_KUBELET: "true"}},
                    strategy={"canary": {"steps": [{"setWeight": 50}]}},
                ),
                namespace=ns,
            )
            wait_for(
                lambda: (
                    r.status(cluster, ns).get("stableVersion") == "1.0.0"
                    and r.status(cluster, ns).get("phase") == "Healthy"
                ),
                timeout=60,
                message=f"1.0.0 stable (kubelet {kubelet.errors}, played {kubelet.played})",
            )
            r.retarget(cluster, ns, "2.0.0")
            wait_for(
                lambda: (
                    r.status(cluster, ns).get("stableVersion") == "2.0.0"
                    and r.status(cluster, ns).get("phase") == "Healthy"
                ),
                timeout=90,
                message=f"2.0.0 promoted (kubelet {kubelet.errors}, played {kubelet.played})",
            )
            assert kubelet.played == {}, kubelet.played  # no initializer failed
            started = " ".join(kubelet.started)
            assert "fraud-1-0-0" in started and "fraud-2-0-0" in started, kubelet.started
            served = cluster.get_json("modelversion", "fraud-2-0-0", ns)
            assert (served or {}).get("status", {}).get("role") == "stable"
        finally:
            assert kubelet.stop() == []
    finally:
        cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)

    # The store's files change under version 1: a different artifact, refused.
    (files1 / "weights" / "model.bin").write_bytes(b"retrained in place")
    refused = ferryman(cluster, *import_args(server, ns, "1"))
    assert refused.returncode == 1, refused.stdout
    assert "already registered by ModelVersion fraud-1-0-0" in refused.stderr, refused.stderr
    assert "Duplicate" in refused.stderr
    kept = cluster.get_json("modelversion", "fraud-1-0-0", ns) or {}
    assert json.dumps(kept["spec"]) == json.dumps(spec1)
