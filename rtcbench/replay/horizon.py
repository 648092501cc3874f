"""Horizon policies: when inference k+1 starts, given when inference k started and its delay.

    adaptive(s_min)   tau_{k+1} = tau_k + max(d_k, s_min)          (the paper's Algorithm 1)
    fixed_clock(s)    tau_{k+1} = s * ceil((tau_k + d_k) / s)  if d_k > s
                                = tau_k + s                     otherwise

`s_min` and `s` are at least 1 (a zero would start infinitely many inferences in one step) and at
most H (checked against the scenario's H when a scenario is loaded).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from rtcbench.replay.base import StrictModel


class AdaptiveHorizon(StrictModel):
    """Start as soon as no inference is in flight and at least `s_min` actions of the chunk were used."""

    kind: Literal["adaptive"] = "adaptive"
    s_min: int = Field(ge=1, description="minimum execution horizon in steps, 1 <= s_min <= H")

    @property
    def min_step(self) -> int:
        """Smallest possible gap tau_{k+1} - tau_k."""
        return self.s_min


class FixedClockHorizon(StrictModel):
    """A clock ticks every `s` steps; a tick starts an inference only if none is in flight."""

    kind: Literal["fixed_clock"] = "fixed_clock"
    s: int = Field(ge=1, description="clock period in steps, 1 <= s <= H")

    @property
    def min_step(self) -> int:
        return self.s


HorizonPolicy = Annotated[AdaptiveHorizon | FixedClockHorizon, Field(discriminator="kind")]
