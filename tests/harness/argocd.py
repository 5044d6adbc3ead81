"""ferryman's Argo CD Lua customizations, run through Argo CD's own Lua package by the Go
harness ``hack/argocd-lua`` (built and cached by its build.sh; ``make test`` builds it
first). Also: which fixture a status object stands for (``fixture_key``), so tests can
check that every phase seen in a real run has a committed fixture, and how a captured
object is stripped before it is committed (``strip``)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

from ferryman.api.annotations import ACTION, ACTION_ID

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts" / "argocd"
CM = CHARTS / "argocd-cm.yaml"
CUSTOM = CHARTS / "resource_customizations" / "ferryman.dev"
ROLLOUT = CUSTOM / "Rollout"
MODELVERSION = CUSTOM / "ModelVersion"
BUILD = ROOT / "hack" / "argocd-lua" / "build.sh"
MODES = ("argocd-cm", "built-in")
NONCE = ACTION_ID

# Placeholders for what differs between runs, so a re-capture only shows real changes.
FIXTURE_NAMESPACE = "ml"
FIXTURE_RESOURCE_VERSION = "4242"


def binary() -> str:
    """The harness binary's path (build.sh builds it when missing: minutes when cold,
    instant when cached). Raises CalledProcessError with the build log on failure."""
    done = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"hack/argocd-lua/build.sh failed:\n{done.stderr[-4000:]}")
    return done.stdout.strip().splitlines()[-1]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the harness with ``args`` after ``--cm``'s subcommand (see its main.go)."""
    sub, rest = args[0], args[1:]
    return subprocess.run(
        [binary(), sub, "--cm", str(CM), *rest],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def health(kind_dir: Path, files: list[Path]) -> list[dict[str, str]]:
    """[{file, mode, status, message, error?}] for each file, in both modes."""
    done = run("health", str(kind_dir), *map(str, files))
    if done.returncode != 0:
        raise AssertionError(f"argocd-lua health failed: {done.stderr}")
    result: list[dict[str, str]] = json.loads(done.stdout)
    return result


def fixture_key(obj: dict[str, Any]) -> str:
    """What a Rollout or ModelVersion status object stands for, e.g. ``Rollout/Paused/
    Inconclusive``, ``Rollout/Healthy/Unavailable``, ``Rollout/Healthy/ShadowStopped``,
    ``Rollout/Healthy/NotificationsFailing``,
    ``Rollout/Healthy/ExperimentEnded``, ``Rollout/WaitingForOperator``,
    ``ModelVersion/Duplicate``: one committed fixture is needed per key seen in a real
    run."""
    kind = obj.get("kind", "?")
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    observed, generation = st.get("observedGeneration"), meta.get("generation")
    if not st.get("phase") or observed is None:
        return f"{kind}/WaitingForOperator"
    if generation and observed < generation:
        return f"{kind}/WaitingForOperator/NewGeneration"
    key = f"{kind}/{st['phase']}"
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    if kind != "Rollout":
        # a ModelVersion past its Rollout's retention, marked (plan.retention)
        expired = (conds.get("Expired") or {}).get("status") == "True"
        return key + "/Expired" if expired else key
    if st["phase"] == "Paused":
        key += "/" + ((st.get("pause") or {}).get("reason") or "?")
    if (conds.get("Available") or {}).get("status") == "False":
        key += "/Unavailable"
    if (conds.get("NotificationsDelivered") or {}).get("status") == "False":
        key += "/NotificationsFailing"  # a webhook problem: the health stays the phase's
    history = st.get("history") or []
    if st["phase"] == "Healthy" and history and history[-1].get("outcome") == "Stopped":
        # an abTest that ended keeping the stable, or a shadow then: stop
        experiment = history[-1].get("cause") == "Experiment"
        key += "/ExperimentEnded" if experiment else "/ShadowStopped"
    return key


def strip(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A captured object without volatile metadata (uid, timestamps of metadata, managed
    fields, kopf's bookkeeping annotations, finalizers), with its namespace and
    resourceVersion replaced by fixed placeholders (also inside messages)."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    for k in ("uid", "creationTimestamp", "managedFields", "finalizers", "selfLink"):
        meta.pop(k, None)
    ann = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if "kopf" not in k and "last-handled-configuration" not in k
    }
    ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    meta["resourceVersion"] = FIXTURE_RESOURCE_VERSION
    text = json.dumps(out).replace(namespace, FIXTURE_NAMESPACE)
    result: dict[str, Any] = json.loads(text)
    return result


def fixture_name(key: str) -> str:
    """``Rollout/Paused/Inconclusive`` -> ``paused-inconclusive`` (the testdata file stem)."""
    return "-".join(key.split("/")[1:]).lower()


def expected_health(key: str) -> str:
    """The Argo CD health docs/gitops.md's table gives a fixture key (independent of the
    Lua, so a test can hold the scripts to it)."""
    kind, _, rest = key.partition("/")
    if rest.startswith("WaitingForOperator"):
        return "Progressing"
    if kind == "ModelVersion":  # Retired/Expired too: Healthy, the message says what to do
        return "Degraded" if rest == "Duplicate" else "Healthy"
    phase, *extra = rest.split("/")
    if phase in ("RolledBack", "Aborted", "Rejected", "Invalid") or "Unavailable" in extra:
        return "Degraded"
    return {"Healthy": "Healthy", "Progressing": "Progressing", "Baking": "Progressing"}.get(
        phase, "Suspended" if phase == "Paused" else "?"
    )


def load(path: Path) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def committed_keys() -> set[str]:
    """Fixture keys of every committed health testdata file (both kinds)."""
    return {
        fixture_key(load(p))
        for kind_dir in (ROLLOUT, MODELVERSION)
        for p in sorted((kind_dir / "testdata").glob("*.yaml"))
    }


def fixture_text(obj: dict[str, Any], origin: str) -> str:
    import yaml

    return f"# {origin}\n" + yaml.safe_dump(obj, sort_keys=True, width=1000)


# Which committed action input each action is tested on (actions/testdata/<input>.yaml).
ACTION_INPUTS = {
    "promote": "paused",
    "promote-full": "paused",
    "abort": "baking",
    "retry": "aborted",
    "undo": "healthy-warm",
    "pause": "progressing",
    "resume": "paused-manual",
}


def discovery_oracle(obj: dict[str, Any]) -> dict[str, bool]:
    """{action: disabled} by ferryman's own rule (plan.actions.refusal), with the
    previous stable version counted warm while status.scaleDownAt is set (what the Lua
    can see)."""
    from ferryman.api.rollout import RolloutStatus
    from ferryman.plan import actions

    st = obj.get("status") or {}
    status = RolloutStatus.model_validate(st)
    warm = bool(st.get("previousStableVersion")) and bool(st.get("scaleDownAt"))
    return {
        a.value: actions.refusal(a.value, status, previous_warm=warm) is not None
        for a in actions.ActionName
    }


def with_action(obj: dict[str, Any], action: str) -> dict[str, Any]:
    """What an action script must return: the object with the CLI's annotation pair
    (the nonce's clock part is a placeholder the Go harness accepts any value for)."""
    out = copy.deepcopy(obj)
    ann = out["metadata"].setdefault("annotations", {})
    rv = out["metadata"].get("resourceVersion") or "0"
    ann[ACTION] = action
    ann[NONCE] = f"argocd-<os.time()>-{rv}"
    return out


def write_test_files() -> None:
    """Rewrite health_test.yaml (expectations from the harness, both modes agreeing) and
    actions/action_test.yaml (discovery from ``discovery_oracle``, outputs from
    ``with_action``) from the committed testdata."""
    import yaml

    for kind_dir in (ROLLOUT, MODELVERSION):
        files = sorted((kind_dir / "testdata").glob("*.yaml"))
        results = health(kind_dir, files)
        tests = []
        for f in files:
            got = {x["mode"]: (x["status"], x["message"]) for x in results if x["file"] == str(f)}
            assert len(set(got.values())) == 1, f"{f}: the two modes disagree: {got}"
            status, message = got["built-in"]
            rel = f"testdata/{f.name}"
            tests.append({"healthStatus": {"status": status, "message": message}, "inputPath": rel})
        (kind_dir / "health_test.yaml").write_text(yaml.safe_dump({"tests": tests}, width=1000))
    data = ROLLOUT / "actions" / "testdata"
    inputs = sorted(
        p for p in data.glob("*.yaml") if not any(p.stem.endswith("." + a) for a in ACTION_INPUTS)
    )
    discovery = [
        {
            "inputPath": f"testdata/{p.name}",
            "result": [
                {"name": k, "disabled": v} for k, v in sorted(discovery_oracle(load(p)).items())
            ],
        }
        for p in inputs
    ]
    action_tests = []
    for action, stem in ACTION_INPUTS.items():
        out = data / f"{stem}.{action}.yaml"
        out.write_text(
            fixture_text(
                with_action(load(data / f"{stem}.yaml"), action),
                f"{stem}.yaml after the {action} action",
            )
        )
        action_tests.append(
            {
                "action": action,
                "inputPath": f"testdata/{stem}.yaml",
                "expectedOutputPath": f"testdata/{out.name}",
            }
        )
    (ROLLOUT / "actions" / "action_test.yaml").write_text(
        yaml.safe_dump(
            {"discoveryTests": discovery, "actionTests": action_tests}, sort_keys=False, width=1000
        )
    )
