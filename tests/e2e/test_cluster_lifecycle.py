"""`up` and `down` of the local control plane, on a second cluster of its own (its own
work directory and port block) so the session's cluster is not disturbed: `up` twice in
a row reuses the running cluster, `up` after `kill -9` of the apiserver (stale pid
files, leftover data) comes up clean, and `down` leaves no process and no listening
port behind."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import localcluster
import pytest

from harness.clusters import free_block


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def second_cluster(tmp_path: Path) -> Iterator[localcluster.Layout]:
    layout = localcluster.Layout(workdir=tmp_path / "cluster", ports=free_block())
    yield layout
    localcluster.down(layout, quiet=True)


def test_up_is_idempotent_recovers_from_kill_9_and_down_leaves_nothing(
    second_cluster: localcluster.Layout,
) -> None:
    layout = second_cluster
    localcluster.up(layout)
    assert localcluster.is_up(layout)
    first = localcluster.component_pids(layout)
    assert all(first.values()), first

    # up twice in a row: the healthy cluster is reused, nothing restarted.
    localcluster.up(layout)
    assert localcluster.component_pids(layout) == first

    # kill -9 of the apiserver; a stale pid file and the etcd data stay behind.
    apiserver = first["kube-apiserver"]
    assert apiserver is not None
    os.kill(apiserver, signal.SIGKILL)
    (layout.pids / "kube-apiserver.pid").write_text("999999")
    assert not localcluster.is_up(layout)
    localcluster.up(layout)
    assert localcluster.is_up(layout)
    second = localcluster.component_pids(layout)
    assert all(second.values()) and second["kube-apiserver"] != apiserver

    localcluster.down(layout)
    assert localcluster.our_processes(layout) == {}
    assert [p for p in layout.ports.all().values() if _port_open(p)] == []
    assert not any(layout.pids.glob("*.pid"))
