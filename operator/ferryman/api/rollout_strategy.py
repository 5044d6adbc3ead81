"""``spec.strategy``: how traffic moves, exactly one of canary (steps of setWeight and
pause), blueGreen (a preview, then a switch), shadow (mirroring, then promote, canary
or stop) or abTest (a share of users, sticky, until a verdict; ``api.rollout_experiment``).
``plan.stages`` turns it into the state machine's stages.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ferryman.api.common import ApiModel, cel, duration_rule, model_rules, rules
from ferryman.api.rollout_experiment import ABTest
from ferryman.api.rollout_limits import MAX_STEPS


class Pause(ApiModel):
    """Wait: for a duration, or (without one) until `kubectl ferryman promote`."""

    duration: str | None = Field(
        None,
        max_length=32,
        description="How long to wait, e.g. 2m. Without it, wait for promote.",
        json_schema_extra=rules(duration_rule("pause.duration")),
    )


class CanaryStep(ApiModel):
    """One canary step: exactly one of setWeight or pause."""

    model_config = model_rules(
        cel(
            "[has(self.setWeight), has(self.pause)].exists_one(x, x)",
            "each canary step needs exactly one action: setWeight or pause",
        )
    )

    set_weight: int | None = Field(
        None, ge=0, le=100, description="Percent of live traffic for the candidate (0-100)."
    )
    pause: Pause | None = Field(None, description="Wait before the next step.")


Steps = list[CanaryStep]


class Canary(ApiModel):
    """Move traffic step by step."""

    steps: Steps = Field(
        min_length=1, max_length=MAX_STEPS, description="Steps, executed in order."
    )


class BlueGreen(ApiModel):
    """Bring the candidate up at full size behind a preview Service, then switch 100%."""

    auto_promotion_seconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description="Promote automatically this long after the preview is Ready "
        "(and analysis passed). Without it, wait for promote.",
    )
    preview_mirror_percent: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Percent of live traffic mirrored to the preview so pre-promotion "
        "analysis has data (gatewayAPI or istio only).",
    )


class ShadowThen(StrEnum):
    PROMOTE = "promote"
    CANARY = "canary"
    STOP = "stop"


class Shadow(ApiModel):
    """Mirror live traffic to the candidate; its responses are discarded."""

    model_config = model_rules(
        cel(
            "self.then != 'canary' || has(self.steps)",
            "shadow with then: canary needs steps for the canary that follows",
        )
    )

    mirror_percent: int = Field(
        ge=0, le=100, description="Percent of live traffic mirrored to the candidate (0-100)."
    )
    duration: str = Field(
        max_length=32,
        description="How long to shadow, e.g. 15m.",
        json_schema_extra=rules(duration_rule("shadow.duration")),
    )
    then: ShadowThen = Field(
        description="After duration with passing analysis: promote, canary or stop."
    )
    steps: Steps | None = Field(
        None, max_length=MAX_STEPS, description="Canary steps when then is canary."
    )


class Strategy(ApiModel):
    """How traffic moves: exactly one of canary, blueGreen, shadow or abTest."""

    model_config = model_rules(
        cel(
            "[has(self.canary), has(self.blueGreen), has(self.shadow), has(self.abTest)]"
            ".exists_one(x, x)",
            "strategy needs exactly one of canary, blueGreen, shadow or abTest",
        )
    )

    canary: Canary | None = Field(None, description="Step-by-step traffic shifting.")
    blue_green: BlueGreen | None = Field(
        None, alias="blueGreen", description="Preview, then switch."
    )
    shadow: Shadow | None = Field(None, description="Mirrored traffic only.")
    ab_test: ABTest | None = Field(
        None,
        alias="abTest",
        description="A share of users, sticky per user, until a statistical verdict "
        "(docs/experiments.md).",
    )

    @property
    def kind(self) -> str:
        """The strategy's field name: canary, blueGreen, shadow or abTest."""
        if self.canary is not None:
            return "canary"
        if self.blue_green is not None:
            return "blueGreen"
        return "abTest" if self.ab_test is not None else "shadow"
