"""kubectl ferryman: rendering, and how actions report the operator's verdict (against a
fake API; the applicability rule itself is tested in test_actions.py)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

import ferryman.cli as cli_module
from cases.api_cases import model_version, rollout
from ferryman.api.annotations import ACTION, ACTION_ID
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import Rollout
from ferryman.cli import Cli, _parser, render


def paused_rollout() -> Rollout:
    obj: dict[str, Any] = rollout(name="fraud")
    obj["metadata"]["namespace"] = "risk"
    obj["status"] = {
        "phase": "Paused",
        "message": "step 1: paused until `kubectl ferryman promote`",
        "pause": {"reason": "Step", "since": "2026-11-22T10:00:00Z"},
        "stableVersion": "1.2.0",
        "candidateVersion": "1.3.0",
        "currentStep": 1,
        "weights": {"stable": 90, "candidate": 10, "mirrorPercent": 0},
        "analysis": {
            "failures": {"error-rate": 1},
            "inconclusive": 0,
            "consecutiveErrors": 0,
            "measurements": [
                {
                    "metric": "error-rate",
                    "query": 'sum(rate(x{version="1.3.0"}[1m]))',
                    "value": 0.02,
                    "threshold": "max 0.01",
                    "verdict": "Failed",
                    "message": "0.02 > 0.01",
                    "at": "2026-11-22T10:00:30Z",
                }
            ],
        },
        "history": [
            {
                "version": "1.2.0",
                "outcome": "Promoted",
                "at": "2026-11-21T09:00:00Z",
                "reason": "first version of the Rollout",
            }
        ],
    }
    return Rollout.model_validate(obj)


def test_status_shows_versions_weights_step_analysis_and_history() -> None:
    text = render.status(paused_rollout())
    assert text.splitlines()[0] == "Rollout risk/fraud (model fraud, canary over gatewayAPI)"
    assert "Paused — step 1: paused until `kubectl ferryman promote`" in text
    assert "1.2.0   weight 90%" in text and "1.3.0   weight 10%   mirror 0%" in text
    assert "Step:      1/2" in text
    assert "failures error-rate: 1" in text
    assert "Failed" in text and "max 0.01" in text and 'version="1.3.0"' in text
    assert "Promoted" in text and "first version of the Rollout" in text


def test_history_and_lineage_tables() -> None:
    hist = render.history(paused_rollout()).splitlines()
    assert hist[0].split() == ["VERSION", "OUTCOME", "CAUSE", "AT", "REASON"]
    assert hist[1].startswith("1.2.0") and "Promoted" in hist[1]
    versions = []
    for v in ("1.10.0", "1.2.0", "1.3.0-rc.1", "1.3.0"):
        mv = model_version(name=f"fraud-{v}", version=v)
        mv["spec"]["lineage"] = {"dataVersion": f"data-{v}", "codeCommit": "a1b2c3d"}
        mv["spec"]["metrics"] = {"auc": 0.94}
        versions.append(ModelVersion.model_validate(mv))
    rows = render.lineage(versions).splitlines()
    assert [r.split()[0] for r in rows[1:]] == ["1.2.0", "1.3.0-rc.1", "1.3.0", "1.10.0"]
    assert "data-1.3.0" in rows[3] and "auc=0.94" in rows[3]


def test_arguments() -> None:
    args = _parser().parse_args(["promote", "fraud", "-n", "risk", "--full", "--no-wait"])
    assert (args.namespace, args.command, args.rollout, args.full, args.no_wait) == (
        "risk",
        "promote",
        "fraud",
        True,
        True,
    )
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["promote"])
    assert exc.value.code == 2


def test_namespace_flag_before_or_after_the_subcommand() -> None:
    assert _parser().parse_args(["-n", "a", "history", "x"]).namespace == "a"
    assert _parser().parse_args(["history", "x", "-n", "b"]).namespace == "b"
    assert not hasattr(_parser().parse_args(["history", "x"]), "namespace")


# --- actions: the CLI tells the truth about the operator's verdict --------------------


class FakeCustomObjects:
    """The Rollout as the API server holds it; ``operator`` plays the operator's part
    on each patch (it writes status.lastAction, or nothing)."""

    def __init__(self, obj: dict[str, Any], operator: Any) -> None:
        self.obj, self.operator = obj, operator
        self.patches: list[Any] = []

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> None:
        patch = args[5]
        self.patches.append(patch)
        self.obj["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
        self.operator(self.obj)


class FakeApps:
    """One Deployment: the previous stable version's, ``available`` of 3 Ready."""

    def __init__(self, version: str, available: int, uid: str) -> None:
        self.api_client = SimpleNamespace(sanitize_for_serialization=lambda d: d)
        self.dep = {
            "metadata": {
                "name": f"fraud-{version}",
                "generation": 1,
                "annotations": {"ferryman.dev/version": version},
                "ownerReferences": [
                    {"apiVersion": "ferryman.dev/v1alpha1", "kind": "Rollout", "uid": uid}
                ],
            },
            "spec": {"replicas": 3},
            "status": {"observedGeneration": 1, "availableReplicas": available},
        }

    def list_namespaced_deployment(self, namespace: str, label_selector: str) -> Any:
        assert "ferryman.dev/rollout=fraud" in label_selector
        return SimpleNamespace(items=[self.dep])


def settled_rollout() -> dict[str, Any]:
    obj: dict[str, Any] = rollout(name="fraud")
    obj["metadata"].update(namespace="risk", uid="uid-1")
    obj["status"] = {
        "phase": "Healthy",
        "stableVersion": "1.3.1",
        "previousStableVersion": "1.2.0",
        "message": "stable 1.3.1 serves 100%",
    }
    return obj


def verdict(result: str, message: str) -> Any:
    def operator(obj: dict[str, Any]) -> None:
        action_id = obj["metadata"]["annotations"][ACTION_ID]
        obj["status"]["handledActionId"] = action_id
        obj["status"]["lastAction"] = {
            "id": action_id,
            "action": obj["metadata"]["annotations"][ACTION],
            "result": result,
            "message": message,
        }

    return operator


def run(
    monkeypatch: pytest.MonkeyPatch,
    operator: Any,
    *argv: str,
    available: int = 3,
    obj: dict[str, Any] | None = None,
) -> tuple[FakeCustomObjects, int]:
    fake = Cli.__new__(Cli)
    fake.namespace = "risk"
    fake.api = FakeCustomObjects(obj or settled_rollout(), operator)  # type: ignore[assignment]
    fake.apps = FakeApps("1.2.0", available, "uid-1")  # type: ignore[assignment]
    monkeypatch.setattr(cli_module, "Cli", lambda *_: fake)
    monkeypatch.setattr(cli_module, "POLL_SECONDS", 0.01)
    return fake.api, cli_module.main(list(argv))  # type: ignore[return-value]


def test_case_31_an_action_the_operator_rejects_exits_1_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "undo needs the previous stable version 1.2.0 still warm and Ready"
    api, code = run(monkeypatch, verdict("Rejected", reason), "undo", "fraud")
    out, err = capsys.readouterr()
    assert code == 1 and len(api.patches) == 1
    assert "handled" not in out and "applied" not in out
    assert f"the operator rejected undo: {reason}" in err


def test_an_applied_action_exits_0_and_says_what_it_did(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, code = run(monkeypatch, verdict("Applied", "undo: 1.2.0 is stable again"), "undo", "fraud")
    out = capsys.readouterr().out
    assert code == 0 and "applied: undo — phase Healthy — undo: 1.2.0 is stable again" in out


def test_undo_with_a_cold_previous_version_is_refused_before_it_is_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api, code = run(monkeypatch, verdict("Applied", ""), "undo", "fraud", available=1)
    assert code == 1 and api.patches == []
    assert "1.2.0 still warm and Ready" in capsys.readouterr().err


def test_no_verdict_in_time_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, code = run(monkeypatch, lambda obj: None, "undo", "fraud", "--wait-timeout", "0.05")
    assert code == 1 and "gave no verdict on undo within 0.05s" in capsys.readouterr().err


def test_a_verdict_for_another_nonce_is_not_taken_for_ours(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def someone_else(obj: dict[str, Any]) -> None:
        # Another user's action replaced ours before the operator handled it.
        obj["metadata"]["annotations"][ACTION_ID] = "other"
        verdict("Applied", "theirs")(obj)

    _, code = run(monkeypatch, someone_else, "undo", "fraud")
    assert code == 1 and "another action (id other) replaced undo" in capsys.readouterr().err


def test_no_wait_returns_after_sending(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api, code = run(monkeypatch, lambda obj: None, "undo", "fraud", "--no-wait")
    assert code == 0 and len(api.patches) == 1
    assert "undo requested" in capsys.readouterr().out


def test_api_errors_are_one_line_with_their_cause(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def forbidden(obj: dict[str, Any]) -> None:
        e = ApiException(status=403, reason="Forbidden")
        e.body = '{"message": "rollouts.ferryman.dev \\"fraud\\" is forbidden"}'
        raise e

    _, code = run(monkeypatch, forbidden, "undo", "fraud")
    assert code == 1
    assert 'Kubernetes API: 403 Forbidden: rollouts.ferryman.dev "fraud" is forbidden' in (
        capsys.readouterr().err
    )


def test_status_and_history_show_the_verdict_and_the_cause() -> None:
    obj = settled_rollout()
    obj["status"]["lastAction"] = {
        "id": "n1",
        "action": "undo",
        "result": "Rejected",
        "message": "undo needs ...",
        "at": "2026-11-22T10:01:00Z",
    }
    obj["status"]["history"] = [
        {
            "version": "1.3.1",
            "outcome": "RolledBack",
            "cause": "Analysis",
            "at": "2026-11-22T10:00:00Z",
            "reason": "analysis: metric error-rate failed 3 times",
        },
        {"version": "1.3.2", "outcome": "Superseded", "at": "2026-11-22T10:02:00Z"},
    ]
    r = Rollout.model_validate(obj)
    text = render.status(r)
    assert "Action:    undo Rejected at 2026-11-22 10:01:00 — undo needs ..." in text
    assert "RolledBack (Analysis)" in text and "Superseded" in text
    rows = [line.split()[:3] for line in render.history(r).splitlines()]
    assert rows == [
        ["VERSION", "OUTCOME", "CAUSE"],
        ["1.3.1", "RolledBack", "Analysis"],
        ["1.3.2", "Superseded", "-"],
    ]


def test_a_bad_kubeconfig_or_an_unreachable_api_is_one_line_naming_its_cause(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_module.main(["--kubeconfig", str(tmp_path / "missing"), "history", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: kubeconfig: ConfigException: ")
    (tmp_path / "broken").write_text("a: b: c\n")
    assert cli_module.main(["--kubeconfig", str(tmp_path / "broken"), "history", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: kubeconfig: ScannerError: ")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    assert cli_module.main(["--kubeconfig", str(kubeconfig), "history", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the Kubernetes API: MaxRetryError: ")
    assert "\n" not in err.strip()


def rolling_rollout(pause: str | None) -> dict[str, Any]:
    obj = settled_rollout()
    obj["status"] = {
        "phase": "Paused" if pause else "Progressing",
        "stableVersion": "1.3.1",
        "candidateVersion": "1.4.0",
        "currentStep": 1,
        **({"pause": {"reason": pause}} if pause else {}),
    }
    return obj


@pytest.mark.parametrize(
    ("action", "pause"), [("pause", None), ("pause", "Step"), ("resume", "Manual")]
)
def test_pause_and_resume_send_their_annotation_and_wait_for_the_verdict(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: str,
    pause: str | None,
) -> None:
    api, code = run(
        monkeypatch, verdict("Applied", "held"), action, "fraud", obj=rolling_rollout(pause)
    )
    out, _ = capsys.readouterr()
    assert code == 0 and f"applied: {action}" in out
    assert api.patches[0]["metadata"]["annotations"][ACTION] == action


@pytest.mark.parametrize(
    ("action", "pause", "expected"),
    [
        ("pause", "Manual", "already paused"),
        ("resume", "Step", "promote passes a pause step"),
        ("resume", None, "resume does not apply in phase Progressing"),
    ],
)
def test_pause_and_resume_that_do_not_apply_are_refused_before_they_are_sent(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: str,
    pause: str | None,
    expected: str,
) -> None:
    api, code = run(
        monkeypatch, verdict("Applied", ""), action, "fraud", obj=rolling_rollout(pause)
    )
    _, err = capsys.readouterr()
    assert code == 1 and api.patches == [] and expected in err


def test_pause_and_resume_are_commands() -> None:
    for action in ("pause", "resume"):
        args = _parser().parse_args([action, "fraud", "--wait-timeout", "5"])
        assert (args.command, args.rollout, args.wait_timeout) == (action, "fraud", 5.0)
