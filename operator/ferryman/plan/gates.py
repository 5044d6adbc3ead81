"""Gates checked before any traffic moves: the candidate's offline metrics (ModelVersion
``spec.metrics``) against absolute bounds and against the stable version's metrics.

For offline metrics ``maxDropVsStable`` is an absolute difference (an AUC of 0.936
against a stable 0.941 is a drop of 0.005), which is how evaluation scores are compared.
A metric the candidate lacks fails the gate: a gate that cannot be checked never passes.
"""

from __future__ import annotations

from collections.abc import Mapping

from ferryman.api.rollout import Gates


def check(
    gates: Gates | None,
    candidate: Mapping[str, float],
    stable: Mapping[str, float] | None,
    *,
    candidate_version: str,
    stable_version: str | None,
) -> str | None:
    """The reason the candidate is rejected, or None when every gate passes."""
    for gate in (gates.offline_metrics if gates else None) or []:
        value = candidate.get(gate.name)
        if value is None:
            return f"offline metric {gate.name} missing from ModelVersion {candidate_version}"
        if gate.min is not None and value < gate.min:
            return f"offline metric {gate.name} = {value:g} is below the minimum {gate.min:g}"
        if gate.max is not None and value > gate.max:
            return f"offline metric {gate.name} = {value:g} is above the maximum {gate.max:g}"
        if gate.max_drop_vs_stable is not None and stable_version is not None:
            base = (stable or {}).get(gate.name)
            if base is None:
                return (
                    f"offline metric {gate.name} missing from the stable version "
                    f"{stable_version}: nothing to compare with"
                )
            if base - value > gate.max_drop_vs_stable + 1e-12:
                return (
                    f"offline metric {gate.name} = {value:g} is {base - value:.6g} below "
                    f"stable {stable_version} ({base:g}); the gate allows "
                    f"{gate.max_drop_vs_stable:g}"
                )
    return None
