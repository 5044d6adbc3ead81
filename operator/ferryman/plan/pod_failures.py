"""What a served version's pods say went wrong, as the state machine uses it.

A pod cannot tell ferryman why it never becomes Ready except through its status: the
storage initializer ends a failure with one line ``<Reason>: <message>`` in its
termination message (``ferryman.storage_init``; the init container's
``terminationMessagePolicy: FallbackToLogsOnError`` gives the log tail when it wrote
none), and a crashing model server leaves its own message. ``failure_of`` reads one pod
(a plain dict, as the API server sends it) into a ``PodFailure`` or None; the handlers
index only the failing pods (``handlers.pods``), so a healthy pod costs nothing.

The state machine then (``artifact_verdict``, ``set_failure_condition``):

- shows the failure of each served version in the ``PodFailure`` condition (reason
  ``ArtifactFailed`` for the initializer, ``ServerFailed`` for the model server; the
  message is the termination line with the pod's name) and posts one Warning Event per
  distinct message (the condition keeps the last one, so a reconcile that sees the same
  failure again posts nothing);
- rolls the candidate back at once when its initializer failed for a reason that no
  retry can change (``DETERMINISTIC``: the artifact is not the registered one, is
  missing, denied, invalid or of an unsupported scheme). KServe's InferenceService
  reports such a failure and stops there; Argo Rollouts and Flagger, which cannot tell
  a deterministic failure from a slow start, wait for the progress deadline. A
  ModelVersion's artifact and digest are immutable, so waiting would only keep a pod
  crash-looping: ferryman ends the rollout with cause ``ArtifactFailed`` and the version
  goes to ``rolledBackVersions`` (``kubectl ferryman retry`` tries it again, e.g. after
  fixing the credentials). Every other failure (``Truncated``, ``Unreachable``, a line
  without a known reason, a model server in CrashLoopBackOff) may heal as the kubelet
  restarts the container: it is reported, and the progress deadline decides, as in
  Argo Rollouts and Flagger.

The candidate never gets traffic either way: its pods are not Ready, and weight goes
only to Ready replicas (``plan.progress``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ferryman.api.common import ConditionStatus, clip
from ferryman.api.rollout_limits import MAX_MESSAGE
from ferryman.plan import conditions
from ferryman.plan.decision import Decision, Event

# The storage initializer's reasons (the termination-message contract, docs/
# troubleshooting-artifacts.md).
REASONS = (
    "DigestMismatch",
    "NotFound",
    "AccessDenied",
    "Truncated",
    "Unreachable",
    "Unsupported",
    "InvalidArtifact",
)
# Those no retry of the same artifact can change (the candidate is rolled back at once).
DETERMINISTIC = frozenset(
    {"DigestMismatch", "NotFound", "AccessDenied", "InvalidArtifact", "Unsupported"}
)
CONDITION = "PodFailure"
REASON_ARTIFACT = "ArtifactFailed"
REASON_SERVER = "ServerFailed"
REASON_NONE = "NoFailure"
MAX_LINE = 1000  # bytes of a termination line shown (the contract's bound)
# Waiting reasons of a container that is not merely starting (kubelet's names).
FAILED_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "RunContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerError",
    }
)
_REASON = re.compile(r"^([A-Z][A-Za-z]+): ")


@dataclass(frozen=True)
class PodFailure:
    """One pod's failure: ``pod`` name, ``container`` name, ``init`` (the storage
    initializer or another init container) or the model server, ``reason`` (the
    initializer's ``<Reason>`` when the line starts with a known one, else the kubelet's
    reason, e.g. ``Error`` or ``CrashLoopBackOff``), ``line`` (``reason_line`` of the
    termination message, at most ``MAX_LINE`` bytes), ``exit_code``."""

    pod: str
    container: str
    init: bool
    reason: str
    line: str
    exit_code: int | None

    @property
    def deterministic(self) -> bool:
        """Whether no retry of the same artifact can succeed (``DETERMINISTIC``)."""
        return self.init and self.reason in DETERMINISTIC

    def describe(self) -> str:
        """One line for a condition, an Event and the history: the pod, the container
        and its termination line."""
        code = f", exit code {self.exit_code}" if self.exit_code is not None else ""
        kind = "init container" if self.init else "container"
        return f"pod {self.pod} {kind} {self.container}{code}: {self.line}"


def reason_line(text: str) -> str:
    """The one line of a termination message that says why: the first line that starts
    with one of ``REASONS`` (the initializer's file holds just that line), else the last
    non-empty line (kubelet's log-tail fallback ends with the error, e.g. a traceback's
    exception); stripped and cut to ``MAX_LINE`` bytes at a character boundary."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if parse_reason(ln)), lines[-1] if lines else "")
    raw = line.encode()
    if len(raw) <= MAX_LINE:
        return line
    return raw[:MAX_LINE].decode(errors="ignore") + "…"


def parse_reason(line: str) -> str | None:
    """The initializer's ``<Reason>`` when ``line`` starts with ``<Reason>: `` and the
    reason is one of ``REASONS``; None otherwise (the whole line is shown then)."""
    m = _REASON.match(line)
    return m.group(1) if m and m.group(1) in REASONS else None


def _container_failure(pod: str, status: Mapping[str, Any], init: bool) -> PodFailure | None:
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    terminated = state.get("terminated")
    waiting = state.get("waiting")
    name = str(status.get("name", ""))
    if terminated is not None:
        code = terminated.get("exitCode")
        if code in (0, None):
            return None
        found = terminated
    elif waiting is not None and waiting.get("reason") in FAILED_WAITING:
        # Restarting after a failure: the kubelet keeps the failed run in lastState.
        found = last or waiting
        code = last.get("exitCode") if last else None
    else:
        return None
    line = reason_line(str(found.get("message") or ""))
    kubelet_reason = str(found.get("reason") or (waiting or {}).get("reason") or "Error")
    if not line:
        line = f"{kubelet_reason} (no termination message)"
    reason = (parse_reason(line) if init else None) or kubelet_reason
    return PodFailure(pod, name, init, reason, line, code if isinstance(code, int) else None)


def failure_of(pod: Mapping[str, Any]) -> PodFailure | None:
    """The first failing container of ``pod`` (a Pod as the API server sends it): init
    containers first (they run first), then the others; None for a healthy, starting or
    deleted pod."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    name = str(meta.get("name", ""))
    for key, init in (("initContainerStatuses", True), ("containerStatuses", False)):
        for cs in status.get(key) or []:
            found = _container_failure(name, cs, init)
            if found is not None:
                return found
    return None


def pick(failures: Iterable[PodFailure]) -> PodFailure | None:
    """The failure one version reports: a deterministic one first, then the
    initializer's, then by pod name (the same pod's failure while it exists, so the
    condition does not flap between pods)."""
    return min(failures, key=lambda f: (not f.deterministic, not f.init, f.pod), default=None)


def artifact_verdict(candidate: str | None, failures: Mapping[str, PodFailure]) -> str | None:
    """Why ``candidate`` must be rolled back at once (its initializer failed for a
    ``DETERMINISTIC`` reason), as a history reason; None otherwise."""
    found = failures.get(candidate or "")
    if found is None or not found.deterministic:
        return None
    return f"artifact failed ({found.reason}): {found.describe()}"


def set_failure_condition(
    d: Decision,
    failures: Mapping[str, PodFailure],
    versions: Iterable[str | None],
    *,
    generation: int,
    now: datetime,
) -> None:
    """The ``PodFailure`` condition: True with the failure of the first of ``versions``
    (the candidate before and after the decision, then the stable) that reports one, and
    one Warning Event per distinct message; False (reason ``NoFailure``, the last failure
    kept in the message) once none of them reports one. Set only once a failure was
    seen: a Rollout that never had a failing pod carries no such condition."""
    s = d.status
    version = next((v for v in versions if v and v in failures), None)
    old = conditions.find(s.conditions, CONDITION)
    if version is None:
        if old is not None and old.status == ConditionStatus.TRUE:
            s.conditions = conditions.set_condition(
                s.conditions,
                type=CONDITION,
                status=ConditionStatus.FALSE,
                reason=REASON_NONE,
                message=clip(f"no served version reports a failing pod; last: {old.message}", 2048),
                generation=generation,
                now=now,
            )
        return
    found = failures[version]
    reason = REASON_ARTIFACT if found.init else REASON_SERVER
    message = clip(f"version {version}: {found.describe()}", 2048)
    s.conditions = conditions.set_condition(
        s.conditions,
        type=CONDITION,
        status=ConditionStatus.TRUE,
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    if old is None or old.message != message or old.status != ConditionStatus.TRUE:
        d.events.append(Event("Warning", reason, message))
    text = found.describe()
    if version == s.candidate_version and text not in (s.message or ""):
        # What `kubectl get rollout -o wide` shows (the Message column) while it lasts.
        s.message = clip(f"{s.message}; {text}" if s.message else text, MAX_MESSAGE)
