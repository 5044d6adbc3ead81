"""Semantic version precedence (semver.org §11), for ``track: latest``.

Build metadata is ignored for precedence; a pre-release sorts before its release; pre-
release identifiers compare numerically when both are numeric, numeric before
alphanumeric, and a longer list wins when all shared identifiers are equal.
"""

from __future__ import annotations

import re
from functools import total_ordering

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@total_ordering
class Version:
    __slots__ = ("core", "pre", "text")

    def __init__(self, text: str) -> None:
        m = _SEMVER.match(text)
        if not m:
            raise ValueError(f"not a semantic version: {text!r}")
        self.text = text
        self.core = (int(m[1]), int(m[2]), int(m[3]))
        self.pre: tuple[str, ...] = tuple(m[4].split(".")) if m[4] else ()

    def _key(self) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int, str], ...]]:
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        # A release (no pre-release) sorts after every pre-release of the same core.
        return (self.core, 0 if self.pre else 1, pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


def is_semver(text: str) -> bool:
    return bool(_SEMVER.match(text))


def is_prerelease(text: str) -> bool:
    """Whether ``text`` is a semantic version with a pre-release part (``2.1.0-rc.1``;
    build metadata alone, ``2.1.0+build.5``, is not one)."""
    m = _SEMVER.match(text)
    return bool(m and m[4])


def highest(versions: list[str]) -> str | None:
    """The highest valid version of ``versions`` (invalid strings are ignored). Versions
    of equal precedence (they differ only in build metadata, ``1.3.0+build.5`` and
    ``1.3.0+build.6``) are ordered by their text, so the pick never depends on the order
    they come in (which changes with every operator restart)."""
    valid = [Version(v) for v in versions if is_semver(v)]
    return max(valid, key=lambda v: (v, v.text)).text if valid else None
