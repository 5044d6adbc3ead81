"""``kubectl ferryman``: the ferryman kubectl plugin (console script ``kubectl-ferryman``).

Reads Rollouts and ModelVersions and sends user intents. Intents are annotations with a
nonce (``ferryman.dev/action`` and ``ferryman.dev/action-id``), never spec edits: GitOps
owns the spec, and the operator applies each action exactly once, recording the handled
id in ``status.handledActionId``. Exit codes: 0 done, 1 not found / does not apply /
timed out, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from ferryman.api.common import GROUP, VERSION
from ferryman.api.modelversion import PLURAL as MV_PLURAL
from ferryman.api.modelversion import ModelVersion
from ferryman.api.rollout import PLURAL, Rollout
from ferryman.cli import actions, render

EPILOG = """actions (promote, abort, retry, undo) are annotations with a nonce on the Rollout
(ferryman.dev/action, ferryman.dev/action-id); the operator applies each exactly once."""


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
    return p


class Cli:
    def __init__(self, kubeconfig: str | None, namespace: str | None) -> None:
        config.load_kube_config(config_file=kubeconfig)
        if namespace is None:
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            namespace = (active or {}).get("context", {}).get("namespace") or "default"
        self.namespace = namespace
        self.api = client.CustomObjectsApi()

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

    def act(self, name: str, action: str, wait: bool, wait_timeout: float) -> None:
        current = self.rollout(name)
        refusal = actions.refusal(action, current.status)
        if refusal:
            raise Failure(f"Rollout {name}: {refusal}")
        action_id = str(uuid.uuid4())
        patch: dict[str, Any] = {
            "metadata": {
                "annotations": {"ferryman.dev/action": action, "ferryman.dev/action-id": action_id}
            }
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
        print(f"rollout.ferryman.dev/{name}: {action} requested (id {action_id})")
        if not wait:
            return
        deadline = time.monotonic() + wait_timeout
        while time.monotonic() < deadline:
            r = self.rollout(name)
            if r.status.handled_action_id == action_id:
                phase = r.status.phase.value if r.status.phase else "Pending"
                print(
                    f"handled: phase {phase}"
                    + (f" — {r.status.message}" if r.status.message else "")
                )
                return
            time.sleep(0.3)
        raise Failure(
            f"the operator did not handle {action} within {wait_timeout:g}s (is it running?)"
        )

    def lineage(self, model: str) -> None:
        listed = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, MV_PLURAL)
        items: list[dict[str, Any]] = listed["items"]  # type: ignore[index]
        versions = [
            ModelVersion.model_validate(i)
            for i in items
            if (i.get("spec") or {}).get("model") == model
        ]
        if not versions:
            raise Failure(f"no ModelVersions of model {model} in namespace {self.namespace}")
        print(render.lineage(versions))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cli = Cli(getattr(args, "kubeconfig", None), getattr(args, "namespace", None))
        if args.command == "status":
            cli.status(args.rollout, args.watch, args.timeout)
        elif args.command == "history":
            print(render.history(cli.rollout(args.rollout)))
        elif args.command == "lineage":
            cli.lineage(args.model)
        else:
            action = "promote-full" if getattr(args, "full", False) else args.command
            cli.act(args.rollout, action, not args.no_wait, args.wait_timeout)
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
