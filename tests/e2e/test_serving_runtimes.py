"""The model-server examples (examples/serving/: Triton, vLLM, KServe's Python model
server, TorchServe, TF Serving, MLServer) against the real API server: each ModelVersion
is accepted by the CRD schema and stored unchanged (nothing pruned), and the Deployment
and Service ferryman renders for it (the golden files of tests/unit) pass the API
server's own validation in a server-side dry run. kwok never starts these images: what
is proven is that the objects are valid, not that the servers answer."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest

from cases import serving_runtimes
from harness.kube import Cluster

pytestmark = pytest.mark.usefixtures("ferryman_crds")
WARN_LABEL = "pod-security.kubernetes.io/warn"
VIOLATION = 'would violate PodSecurity "restricted'


@pytest.fixture(scope="module")
def runtimes_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace that warns about any pod template beyond the restricted Pod Security
    Standard (PodSecurity admission checks workload templates in warn mode only)."""
    name = cluster.create_namespace("t-serving-runtimes")
    cluster.kubectl("label", "namespace", name, f"{WARN_LABEL}=restricted")
    yield name
    cluster.delete_namespace(name)


@pytest.mark.parametrize("runtime", serving_runtimes.RUNTIMES)
def test_runtime_example_is_accepted_and_renders_objects_the_api_server_accepts(
    cluster: Cluster, runtimes_namespace: str, runtime: str
) -> None:
    ns = runtimes_namespace
    manifest = serving_runtimes.manifest(runtime)
    applied = cluster.kubectl(
        "apply", "-o", "json", "-f", "-", "-n", ns, input=json.dumps(manifest)
    )
    stored = json.loads(applied.stdout)
    assert stored["spec"] == manifest["spec"]  # every field known to the schema, unpruned

    objects = serving_runtimes.rendered(runtime)
    for obj in objects:
        obj["metadata"]["namespace"] = ns
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input="\n---\n".join(json.dumps(o) for o in objects),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert VIOLATION not in result.stderr, result.stderr  # within the restricted standard
    out = json.loads(result.stdout)
    accepted = out["items"] if out.get("kind") == "List" else [out]
    assert [o["kind"] for o in accepted] == ["Deployment", "Service"]
    deployment, service = accepted
    # What the API server would store keeps every port with its name and appProtocol.
    assert [(p["name"], p.get("appProtocol")) for p in service["spec"]["ports"]] == [
        (p["name"], p.get("appProtocol")) for p in objects[1]["spec"]["ports"]
    ]
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [p["name"] for p in server["ports"]] == [p["name"] for p in service["spec"]["ports"]]


def test_the_dry_run_is_not_a_rubber_stamp(cluster: Cluster, runtimes_namespace: str) -> None:
    """What the schema refuses in a ModelVersion (a privileged server, a hostPath
    volume), forced into a rendered Deployment, draws the restricted standard's warning
    in the same namespace, and a Service port numbered twice is refused outright."""
    ns = runtimes_namespace
    deployment, service = serving_runtimes.rendered("triton")
    deployment["metadata"]["namespace"] = service["metadata"]["namespace"] = ns
    privileged = copy.deepcopy(deployment)
    privileged["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(privileged), check=False
    )
    # Refused outright where the API server disallows privileged containers (the local
    # control plane does), else warned about.
    assert result.returncode != 0 or VIOLATION in result.stderr, result.stderr
    assert "privileged" in result.stderr, result.stderr
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "node", "hostPath": {"path": "/"}})
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(deployment), check=False
    )
    assert VIOLATION in result.stderr, result.stderr
    assert "hostPath" in result.stderr and "allowPrivilegeEscalation" in result.stderr
    service["spec"]["ports"][1]["port"] = service["spec"]["ports"][0]["port"]
    refused = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(service), check=False
    )
    assert refused.returncode != 0 and "Duplicate value" in refused.stderr, refused.stderr
