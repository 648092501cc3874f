"""`sync` (stop-and-wait): the world pauses while inference runs.

The chunk is a fresh sample (the world waited, so nothing was executed during the inference and no
prefix needs freezing). The pause itself lives in the schedule: it is built with `world_pauses=True`,
so every control-timeline delay is 0 and `Schedule.pause` holds the wall steps the world waited; the
engine adds them to `wall_steps`.
"""

from __future__ import annotations

from rtcbench.methods.naive import naive_chunk

WORLD_PAUSES = True


def sync_chunk(policy, obs, prefix, dhat, s, key, *, n: int):
    """Same computation as `naive`: obs [B, O], key [B, 2] -> (chunk [B, H, A], Cost)."""
    return naive_chunk(policy, obs, prefix, dhat, s, key, n=n)
