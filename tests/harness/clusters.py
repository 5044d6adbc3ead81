"""A second local control plane for tests that need a cluster of their own (a fresh,
empty one, or one they may break): its own work directory and a free block of ports, so
the session's shared cluster is never disturbed."""

from __future__ import annotations

import os
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


# Blocks of ports scanned per pytest-xdist worker: two workers may each start a second
# cluster at the same moment, and "not listening yet" is no reservation, so each worker
# scans a range of its own (within a worker, tests run one at a time).
FIRST_BASE, STRIDE, BLOCKS_PER_WORKER = 17443, 97, 20


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...; gw0 alone
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def free_block() -> localcluster.Ports:
    """A block of loopback ports none of which is listening, from this xdist worker's own
    range (20 blocks from 17443 + worker * 20 * 97). Raises AssertionError when none is
    free."""
    first = FIRST_BASE + _worker_index() * BLOCKS_PER_WORKER * STRIDE
    for base in range(first, first + BLOCKS_PER_WORKER * STRIDE, STRIDE):
        ports = localcluster.Ports(base=base)
        if not any(_port_open(p) for p in ports.all().values()):
            return ports
    raise AssertionError(f"no free port block in {first}..{first + BLOCKS_PER_WORKER * STRIDE}")


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
