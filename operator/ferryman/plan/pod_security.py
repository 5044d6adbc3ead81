"""The security settings every container ferryman renders gets.

One place for the restricted Pod Security Standard
(https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted), shared
by the model server (``plan/serving.py``) and the storage initializer
(``plan/initializer.py``).
"""

from __future__ import annotations

from typing import Any


def container() -> dict[str, Any]:
    """The restricted Pod Security Standard for one container."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
