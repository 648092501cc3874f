"""Delay replay: profiles, traces, tail control and forecasters -> a deterministic `Schedule` (numpy, host side).

Nothing here imports JAX: ``rtcbench schedule`` inspects timelines without any physics.
"""

from rtcbench.replay.horizon import AdaptiveHorizon, FixedClockHorizon, HorizonPolicy
from rtcbench.replay.schedule import Schedule, ScheduleStats, build_schedule, schedule_from_delays
from rtcbench.replay.setup import DelaySetup

__all__ = [
    "AdaptiveHorizon",
    "DelaySetup",
    "FixedClockHorizon",
    "HorizonPolicy",
    "Schedule",
    "ScheduleStats",
    "build_schedule",
    "schedule_from_delays",
]
