"""The admission fuzz expects what the API server stores: the CRD's defaults filled in.

Without them, every accepted Rollout without ``spec.replicas`` (defaulted to 1 for the
scale subresource) failed the fuzz's round-trip check.
"""

from __future__ import annotations

from cases import fuzz_schema as schema


def test_an_absent_replicas_is_the_crd_default() -> None:
    default = schema.at("Rollout", "spec.replicas")["default"]
    assert schema.with_defaults("Rollout", {"modelName": "m"}) == {
        "modelName": "m",
        "replicas": default,
    }


def test_a_given_value_and_absent_objects_are_left_alone() -> None:
    spec = {"modelName": "m", "replicas": 3}
    assert schema.with_defaults("Rollout", spec) == spec
    # No default is invented for a field the schema gives none.
    assert "bake" not in schema.with_defaults("Rollout", {"modelName": "m"})
