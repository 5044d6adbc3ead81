"""The operator runs as a real subprocess that tests can SIGKILL and start again."""

from __future__ import annotations

from harness.kube import wait_for
from harness.operator import OperatorProcess


def test_operator_serves_liveness_and_survives_sigkill_and_restart(
    operator: OperatorProcess,
) -> None:
    assert operator.is_live()
    first_pid = operator.proc.pid  # type: ignore[union-attr]
    operator.kill()
    assert operator.proc.returncode == -9  # type: ignore[union-attr]
    assert not operator.is_live()
    operator.start()
    assert operator.proc.pid != first_pid  # type: ignore[union-attr]
    wait_for(operator.is_live, timeout=10, message="liveness after restart")
    # A graceful stop ends the process cleanly.
    assert operator.stop() == 0
