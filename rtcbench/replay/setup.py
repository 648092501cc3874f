"""A named delay setup: profile -> tail control -> forecaster, plus the horizon policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_serializer

from rtcbench.replay.base import StrictModel
from rtcbench.replay.forecast import Forecaster
from rtcbench.replay.horizon import HorizonPolicy
from rtcbench.replay.profiles import DelayProfile
from rtcbench.replay.tail import TailControl


class DelaySetup(StrictModel):
    """One delay condition of a scenario (a column of its results)::

        - name: longtail_wmax
          profile: {kind: mixture, base: {kind: categorical, values: [1, 2, 3], probs: [0.25, 0.5, 0.25]},
                    p_spike: 0.05, d_spike: 7}
          tail: [{kind: cap, d_max: 5}]
          forecaster: {kind: window_max, b: 10, init: 3}
          horizon: {kind: adaptive, s_min: 3}
          start: sync          # or reference (rtcbench.replay.schedule: the RTC reference's start-up)

    ``start`` is left out of dumps while it has its default, so the config hash of every setup written
    before the option existed is unchanged.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64, description="unique within the scenario")
    profile: DelayProfile
    tail: list[TailControl] = Field(default_factory=list, description="applied in order")
    forecaster: Forecaster
    horizon: HorizonPolicy
    start: Literal["sync", "reference"] = Field(
        default="sync", description="sync: the first chunk runs s_1 + d_1 steps (docs/DESIGN.md §1); reference: the RTC "
        "reference eval loop's start, a second inference from the first observation at step 0")

    @model_serializer(mode="wrap")
    def _drop_default_start(self, handler):
        data = handler(self)
        if isinstance(data, dict) and data.get("start") == "sync":
            del data["start"]
        return data

    def trace_paths(self) -> list[str]:
        """Trace files this setup reads (as written, relative to the scenario's directory)."""
        return self.profile.trace_paths()
