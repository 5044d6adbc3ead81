"""A second local control plane for tests that need a cluster of their own (a fresh,
empty one, or one they may break): its own work directory and a free block of ports, so
the session's shared cluster is never disturbed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import localcluster

from harness.kube import Cluster, check_test_context


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_block() -> localcluster.Ports:
    """A block of loopback ports none of which is listening. Raises AssertionError when
    there is none between 17443 and 30000."""
    for base in range(17443, 30000, 97):
        ports = localcluster.Ports(base=base)
        if not any(_port_open(p) for p in ports.all().values()):
            return ports
    raise AssertionError("no free port block")


@contextmanager
def fresh_cluster(workdir: Path) -> Iterator[Cluster]:
    """A new, empty local control plane (Gateway API and Istio CRDs installed, nothing of
    ferryman's), stopped with every process and port on exit."""
    layout = localcluster.Layout(workdir=workdir, ports=free_block())
    bins = localcluster.Binaries.from_cache()
    try:
        localcluster.up(layout, bins)
        yield Cluster(
            kubeconfig=layout.kubeconfig,
            local=True,
            context=check_test_context(layout.kubeconfig),
            kubectl_bin=str(bins.kubectl),
            helm_bin=str(bins.helm),
        )
    finally:
        localcluster.down(layout, quiet=True)
