"""``kubectl ferryman``: the ferryman kubectl plugin (console script ``kubectl-ferryman``).

Reads Rollouts and ModelVersions and sends user intents. Intents are annotations with a
nonce (``ferryman.dev/action`` and ``ferryman.dev/action-id``), never spec edits: GitOps
owns the spec, and the operator applies each action exactly once, recording the handled
id in ``status.handledActionId`` and its verdict in ``status.lastAction``.

An action is checked first with the rule the operator uses (``plan.actions.refusal``; for
undo, the CLI reads the previous stable version's Deployment to know whether it is warm),
then sent, then (unless ``--no-wait``) the CLI waits for the operator's verdict on its own
nonce: ``Applied`` exits 0, ``Rejected`` exits 1 with the operator's reason (the Rollout
may have moved on between the check and the operator's decision).

Exit codes: 0 done, 1 not found / does not apply / rejected by the operator / timed out,
2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ferryman import errors
from ferryman.api.annotations import ACTION, ACTION_ID
from ferryman.api.common import GROUP, VERSION
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import PLURAL, ActionResult, Rollout, RolloutPhase
from ferryman.cli import approve, audit, digest, mlflow, render, uninstall
from ferryman.plan import actions, approvals, labels
from ferryman.plan import mlflow as mlflow_plan

EPILOG = """actions are annotations with a nonce on the Rollout (ferryman.dev/action:
promote, abort, retry, undo, pause, resume; ferryman.dev/action-id); the operator applies
each exactly once and records its verdict (status.lastAction). An action exits 0 when
the operator applied it, 1 when it does not apply or the operator rejected it (with the
reason). `approve` creates a ModelApproval as yourself (docs/approvals.md)."""

POLL_SECONDS = 0.3
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Failure(Exception):
    """An error for the user: printed, exit code 1."""


def _parser() -> argparse.ArgumentParser:
    # -n/--kubeconfig work before or after the subcommand, as with kubectl. SUPPRESS keeps
    # a subcommand's absent flag from overwriting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        help="namespace (default: the context's, or default)",
    )
    common.add_argument(
        "--kubeconfig",
        default=argparse.SUPPRESS,
        help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)",
    )
    p = argparse.ArgumentParser(
        prog="kubectl ferryman",
        parents=[common],
        description=(__doc__ or "").split("\n\n")[0],
        epilog=EPILOG,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    st = sub.add_parser(
        "status", parents=[common], help="a Rollout's versions, weights, step, analysis and history"
    )
    st.add_argument("rollout")
    st.add_argument("-w", "--watch", action="store_true", help="re-render on every change")
    st.add_argument("--timeout", type=float, default=None, help="with --watch: stop after seconds")
    for name, text in (
        ("promote", "advance a paused Rollout one step (--full: to 100%%)"),
        ("abort", "return all traffic to stable and stop the rollout"),
        ("retry", "retry a rolled-back, aborted or rejected version"),
        ("undo", "go back to the previous stable version while it is warm"),
        ("pause", "hold a rolling-out Rollout at its current step (pause reason Manual)"),
        ("resume", "continue a manually paused Rollout at the same step"),
    ):
        a = sub.add_parser(name, parents=[common], help=text)
        a.add_argument("rollout")
        if name == "promote":
            a.add_argument("--full", action="store_true", help="skip the remaining steps")
        a.add_argument("--no-wait", action="store_true", help="do not wait for the operator")
        a.add_argument("--wait-timeout", type=float, default=30.0, help="seconds (default 30)")
    h = sub.add_parser("history", parents=[common], help="how each version's rollout ended")
    h.add_argument("rollout")
    lin = sub.add_parser(
        "lineage", parents=[common], help="a model's versions: data, code, run, digest, metrics"
    )
    lin.add_argument("model")
    uninstall.add_parser(sub, [common])
    digest.add_parser(sub, [common])
    approve.add_parser(sub, [common])
    mlflow.add_parser(sub, [common])
    return p


class Cli:
    def __init__(self, kubeconfig: str | None, namespace: str | None) -> None:
        try:
            config.load_kube_config(config_file=kubeconfig)
        except ConfigException:
            if kubeconfig is not None or not os.path.exists(SERVICE_ACCOUNT_NAMESPACE):
                raise
            # In a pod with no kubeconfig (the chart's uninstall hook): its ServiceAccount.
            config.load_incluster_config()
            if namespace is None:
                with open(SERVICE_ACCOUNT_NAMESPACE) as f:
                    namespace = f.read().strip()
        if namespace is None:
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            namespace = (active or {}).get("context", {}).get("namespace") or "default"
        self.namespace = namespace
        self.api = client.CustomObjectsApi()
        self.apps = client.AppsV1Api()

    def rollout(self, name: str) -> Rollout:
        try:
            obj = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as e:
            if e.status == 404:
                raise Failure(f"Rollout {name} not found in namespace {self.namespace}") from e
            raise
        return Rollout.model_validate(obj)

    def status(self, name: str, watch_: bool, timeout: float | None) -> None:
        print(render.status(self.rollout(name)), flush=True)
        if not watch_:
            return
        w = watch.Watch()
        deadline = None if timeout is None else time.monotonic() + timeout
        last = ""
        try:
            while deadline is None or time.monotonic() < deadline:
                remaining = None if deadline is None else max(1, int(deadline - time.monotonic()))
                for event in w.stream(
                    self.api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=remaining or 300,
                ):
                    text = render.status(Rollout.model_validate(event["object"]))
                    if text != last:
                        print(f"\n--- {time.strftime('%H:%M:%S')} ---\n{text}", flush=True)
                        last = text
                    if deadline is not None and time.monotonic() >= deadline:
                        w.stop()
        except KeyboardInterrupt:
            w.stop()

    def previous_warm(self, rollout: Rollout) -> bool:
        """Whether the previous stable version's Deployment is at full size and Ready,
        read as the operator reads it (``plan.actions.deployment_readiness``)."""
        prev = rollout.status.previous_stable_version
        if not prev:
            return False
        listed = self.apps.list_namespaced_deployment(
            self.namespace,
            label_selector=(
                f"{labels.ROLLOUT}={labels.label_value(rollout.metadata.name)},"
                f"{labels.MANAGED_BY}=ferryman"
            ),
        )
        for dep in listed.items:
            obj: dict[str, Any] = self.apps.api_client.sanitize_for_serialization(dep)
            meta = obj.get("metadata") or {}
            if (meta.get("annotations") or {}).get(labels.VERSION) != prev:
                continue
            if not labels.is_owned_by(obj, rollout):
                continue
            replicas, available = actions.deployment_readiness(obj)
            return actions.previous_warm(
                replicas=rollout.spec.replicas, scaled_to=replicas, available=available
            )
        return False

    def act(self, name: str, action: str, wait: bool, wait_timeout: float) -> None:
        current = self.rollout(name)
        # Warmth of the previous stable matters only to undo and to abort while baking.
        needs_warmth = action == "undo" or (
            action == "abort" and current.status.phase == RolloutPhase.BAKING
        )
        warm = self.previous_warm(current) if needs_warmth else False
        refusal = actions.refusal(action, current.status, previous_warm=warm)
        if refusal:
            raise Failure(f"Rollout {name}: {refusal}")
        action_id = str(uuid.uuid4())
        patch: dict[str, Any] = {
            "metadata": {"annotations": {ACTION: action, ACTION_ID: action_id}}
        }
        self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )
        print(f"rollout.ferryman.dev/{name}: {action} requested (id {action_id})", flush=True)
        if not wait:
            return
        print(self.verdict(name, action, action_id, wait_timeout))

    def verdict(self, name: str, action: str, action_id: str, wait_timeout: float) -> str:
        """Wait for the operator's verdict on ``action_id``; the text to print when it
        applied the action. Raises Failure (exit 1) when it rejected it, when another
        action replaced this one before it was handled, or after ``wait_timeout`` s."""
        deadline = time.monotonic() + wait_timeout
        while True:
            r = self.rollout(name)
            last = r.status.last_action
            if last is not None and last.id == action_id:
                if last.result == ActionResult.REJECTED:
                    raise Failure(f"Rollout {name}: the operator rejected {action}: {last.message}")
                phase = r.status.phase.value if r.status.phase else "Pending"
                return f"applied: {action} — phase {phase}" + (
                    f" — {last.message}" if last.message else ""
                )
            if r.status.handled_action_id == action_id:
                # An operator that predates status.lastAction: handled, verdict unknown.
                return f"handled (no verdict recorded by this operator version): {action}"
            pending = r.metadata.annotations.get(ACTION_ID)
            if r.status.handled_action_id != action_id and pending not in (None, action_id):
                raise Failure(
                    f"Rollout {name}: another action (id {pending}) replaced {action} before "
                    "the operator's verdict on it could be read; see `kubectl get events`"
                )
            if time.monotonic() >= deadline:
                raise Failure(
                    f"the operator gave no verdict on {action} within {wait_timeout:g}s "
                    "(is it running?); the action is still pending and will be applied "
                    "when the operator handles it; to withdraw it: kubectl annotate "
                    f"rollout.ferryman.dev {name} {ACTION}- {ACTION_ID}-"
                )
            time.sleep(POLL_SECONDS)

    def model_versions(self) -> list[ModelVersion]:
        listed = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, MV_PLURAL)
        items: list[dict[str, Any]] = listed["items"]  # type: ignore[index]
        return [ModelVersion.model_validate(i) for i in items]

    def approved_born(self, ro: Rollout, version: str) -> list[datetime | None]:
        """When the objects an approval of ``version`` approves were created: the Rollout
        and its model's ModelVersion(s) of that version (``plan.approvals.born``), so a
        re-created one is approved anew (``approve.name_for``). Without ``list`` on
        ModelVersions (RBAC) only the Rollout's."""
        try:
            mvs = self.model_versions()
        except ApiException as e:
            if e.status != 403:
                raise
            mvs = []
        return [
            ro.metadata.creation_timestamp,
            *(
                mv.metadata.creation_timestamp
                for mv in mvs
                if mv.spec.model == ro.spec.model
                and mv.spec.version == version
                and mv.status.phase != "Duplicate"
            ),
        ]

    def lineage(self, model: str) -> None:
        versions = [mv for mv in self.model_versions() if mv.spec.model == model]
        if not versions:
            raise Failure(f"no ModelVersions of model {model} in namespace {self.namespace}")
        print(render.lineage(versions))
        served = audit.serving(versions)
        if served:
            print(f"\nServing history (from each ModelVersion's status):\n{served}")

    def history(self, name: str) -> None:
        """The Rollout's history; once the Rollout is gone, what its ModelVersions
        recorded of it (their serving history and rejections)."""
        try:
            rollout = self.rollout(name)
        except Failure:
            served = audit.serving(self.model_versions(), rollout=name)
            if not served:
                raise
            print(f"Rollout {name} no longer exists; from its ModelVersions' serving history:")
            print(served)
            return
        print(render.history(rollout))
        line = audit.older(rollout.status.older_history, "entries")
        if line:
            print(line)

    def import_mlflow(self, args: argparse.Namespace) -> int:
        """``import mlflow``: create the ModelVersion unless it is there already. A
        create that loses a race (409) is compared again with what won it."""

        def present() -> list[dict[str, Any]]:
            listed = self.api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, MV_PLURAL
            )
            items: list[dict[str, Any]] = listed["items"]  # type: ignore[index]
            return items

        def create(mv: dict[str, Any]) -> bool:
            try:
                self.api.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, MV_PLURAL, mv
                )
                return True
            except ApiException as e:
                if e.status != 409:
                    raise
                decided = mlflow_plan.verdict(mv, present())
                if decided.create:  # a same-named object of another model or version
                    raise Failure(
                        f"ModelVersion {mv['metadata']['name']} exists with another model "
                        "or version"
                    ) from e
                return False

        return mlflow.run_import(args, present, create, lambda line: print(line, flush=True))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "run"):  # a command without a cluster (digest)
        return int(args.run(args))
    try:
        if args.command == "import" and args.output == "yaml":  # no cluster needed
            return mlflow.run_import(args, list, lambda mv: False, print)
        cli = Cli(getattr(args, "kubeconfig", None), getattr(args, "namespace", None))
        if args.command == "import":
            return cli.import_mlflow(args)
        if args.command == "uninstall":
            uninstall.Uninstall(cli.api.api_client, lambda line: print(line, flush=True)).run(
                uninstall.namespaces_of(args, cli.namespace),
                stop_operator=args.stop_operator,
                delete_resources=args.delete_resources,
                delete_crds=args.delete_crds,
                timeout=args.timeout,
            )
        elif args.command == "status":
            cli.status(args.rollout, args.watch, args.timeout)
        elif args.command == "history":
            cli.history(args.rollout)
        elif args.command == "lineage":
            cli.lineage(args.model)
        elif args.command == "approve":
            ro = cli.rollout(args.rollout)
            gate = ro.spec.gates.approvals if ro.spec.gates else None
            version = ro.status.candidate_version
            attempt = (
                approvals.counting_after(ro.status, version, cli.approved_born(ro, version))
                if version
                else None
            )
            print(
                approve.approve(
                    cli.api, cli.namespace, args.rollout, version, gate, args.comment, attempt
                )
            )
        else:
            action = "promote-full" if getattr(args, "full", False) else args.command
            cli.act(args.rollout, action, not args.no_wait, args.wait_timeout)
    except (
        Failure,
        uninstall.UninstallError,
        approve.ApproveError,
        mlflow_plan.Refused,
        mlflow.MlflowError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ApiException as e:
        print(f"error: Kubernetes API: {_api_error(e)}", file=sys.stderr)
        return 1
    except (ConfigException, yaml.YAMLError) as e:
        print(f"error: kubeconfig: {errors.describe(e)}", file=sys.stderr)
        return 1
    except (urllib3.exceptions.HTTPError, OSError) as e:
        print(f"error: cannot reach the Kubernetes API: {errors.describe(e)}", file=sys.stderr)
        return 1
    return 0


def _api_error(e: ApiException) -> str:
    """An API error as one line: status, reason, and the server's message if any."""
    detail = ""
    if e.body:
        try:
            detail = str(json.loads(e.body).get("message") or "")
        except (ValueError, AttributeError):
            detail = str(e.body)[:300]
    if e.status is None:
        return errors.describe(e)
    return f"{e.status} {e.reason or ''}".strip() + (f": {detail}" if detail else "")


if __name__ == "__main__":
    sys.exit(main())
