"""Why a storage initializer failed, as one line its pod's termination message carries.

The contract with the operator (pods14's Pod watch reads the init container's
``state.terminated.message``): the initializer writes exactly one line,
``<Reason>: <message>``, to its termination-message file and exits non-zero. The kubelet
keeps at most 4096 bytes of it; the line here is at most ``MAX_LINE`` bytes. Messages
never carry credentials: ``line`` removes the values of the credential variables a
store reads and any ``user:password@`` in a URL.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum

MAX_LINE = 1000

# Environment variables whose values must never appear in a message (docs/artifacts.md).
SECRET_ENV = (
    "MODEL_STORE_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_JSON",
    "OCI_USERNAME",
    "OCI_PASSWORD",
)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


_URL = re.compile(r"\S+://\S+")


def words(text: str) -> str:
    """``text`` lower-cased with every URL (``scheme://...`` up to the next space) left
    out, for matching an error's words and status codes: a URL's port, path or digest
    must not read as one (``127.0.0.1:38401`` is not an HTTP 401)."""
    return _URL.sub(" ", text).lower()


def has_status(text: str, *codes: int) -> bool:
    """Whether ``text`` (as ``words`` leaves it) names one of the HTTP status ``codes`` as
    a number of its own (not part of a longer number or a URL)."""
    low = words(text)
    return any(re.search(rf"(?<![\w.:/]){code}(?![\w.])", low) for code in codes)


class Reason(StrEnum):
    """The reasons of the initializer contract (``/work`` notes, docs/artifacts.md)."""

    DIGEST_MISMATCH = "DigestMismatch"  # fetched completely, but not the registered bytes
    NOT_FOUND = "NotFound"  # no object, prefix, claim path, tag or blob
    ACCESS_DENIED = "AccessDenied"  # credentials missing, wrong, or without permission
    TRUNCATED = "Truncated"  # fewer bytes than the store announced, or a bad checksum
    UNREACHABLE = "Unreachable"  # no connection, TLS refused, timeout, server error
    UNSUPPORTED = "Unsupported"  # a scheme, digest algorithm or layer kind not handled
    INVALID_ARTIFACT = "InvalidArtifact"  # a symlink, an unsafe path, a malformed URI


class StorageError(Exception):
    """A failure with its reason; ``str()`` is the message without the reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def line(error: StorageError, environ: dict[str, str] | None = None) -> str:
    """``"<Reason>: <message>"`` on one line of at most MAX_LINE UTF-8 bytes, with every
    credential value from ``environ`` (default ``os.environ``) and URL userinfo removed."""
    env = os.environ if environ is None else environ
    text = " ".join(str(error).split())
    for var in SECRET_ENV:
        value = env.get(var, "")
        if len(value) >= 4:
            text = text.replace(value, f"<{var}>")
    text = _USERINFO.sub("", text)
    out = f"{error.reason.value}: {text}"
    data = out.encode()
    if len(data) > MAX_LINE:
        out = data[: MAX_LINE - 3].decode(errors="ignore") + "..."
    return out
