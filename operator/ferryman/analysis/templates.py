"""Query templates: ``{{model}}``, ``{{version}}``, ``{{namespace}}``, ``{{workload}}``
(the version's Deployment), ``{{stableVersion}}``, ``{{interval}}``. An unknown variable
is an error found before any traffic moves; the rendered query is kept with each
measurement so a user sees exactly what was asked."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

VARIABLES = ("model", "version", "namespace", "workload", "stableVersion", "interval")
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def unknown_variables(queries: Iterable[str]) -> list[str]:
    found: list[str] = []
    for q in queries:
        for name in _VAR.findall(q):
            if name not in VARIABLES and name not in found:
                found.append(name)
    return found


def render(query: str, values: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise KeyError(f"unknown query variable {{{{{name}}}}}")
        return values[name]

    return _VAR.sub(sub, query)
