"""Traffic routers behind one small interface.

A router turns the state machine's ``Route`` (weights by version, mirror percent) into
the object its data plane reads, and reads what is really there back into a ``Route``.
Routers are pure: the handler checks ownership, applies the object with server-side
apply (the full desired state every time, never appending) and passes back what the API
server returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ferryman.plan.route import Route

Obj = dict[str, Any]


class Router(Protocol):
    api_version: str
    kind: str
    plural: str

    def build(
        self,
        *,
        name: str,
        namespace: str,
        route: Route,
        services: Mapping[str, str],
        port: int,
        metadata: Obj,
    ) -> Obj:
        """The routing object sending ``route``'s weights to the per-version Services
        (``services`` maps version -> Service name)."""
        ...

    def read(self, obj: Obj, versions: Mapping[str, str]) -> Route | None:
        """The weights really in ``obj`` (``versions`` maps Service name -> version)."""
        ...
