"""kopf's requests carry this replica's identity in their User-Agent.

Why it exists: with two replicas (leader election, ``ferryman.kube.lease``) the API
server's audit log must show which process made each request; the audit event's
``userAgent`` is the only per-process field when both replicas share one ServiceAccount.
kopf's settings have no User-Agent knob: its HTTP session takes its headers from the
login handler's ``ConnectionInfo.as_http_headers()``, so ferryman logs in exactly as kopf
would by default (``kopf.login_via_client``: in-cluster, else $KUBECONFIG) and returns a
``ConnectionInfo`` whose headers add ``User-Agent: ferryman/<version> (<identity>)
kopf/<version>``. Registering a login handler replaces kopf's default ones.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import Any

import kopf

from ferryman.kube.client import user_agent


@dataclasses.dataclass(frozen=True, kw_only=True)
class IdentifiedConnectionInfo(kopf.ConnectionInfo):
    """kopf's ConnectionInfo plus a User-Agent header."""

    user_agent: str = ""

    def as_http_headers(self) -> dict[str, str]:
        headers = dict(super().as_http_headers())
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
        return headers


def kopf_user_agent() -> str:
    """ferryman's User-Agent (with the identity) followed by kopf's own product token."""
    return f"{user_agent()} kopf/{metadata.version('kopf')}"


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's default client login, identified (module docstring). Raises
    ``kopf.LoginError`` as kopf's does when neither in-cluster nor kubeconfig works."""
    info = kopf.login_via_client(**kwargs)
    if info is None:
        return None
    fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    return IdentifiedConnectionInfo(**fields, user_agent=kopf_user_agent())
