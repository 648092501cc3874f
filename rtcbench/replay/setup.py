"""A named delay setup: profile -> tail control -> forecaster, plus the horizon policy."""

from __future__ import annotations

from pydantic import Field

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
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64, description="unique within the scenario")
    profile: DelayProfile
    tail: list[TailControl] = Field(default_factory=list, description="applied in order")
    forecaster: Forecaster
    horizon: HorizonPolicy

    def trace_paths(self) -> list[str]:
        """Trace files this setup reads (as written, relative to the scenario's directory)."""
        return self.profile.trace_paths()
