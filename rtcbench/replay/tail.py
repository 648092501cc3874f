"""Tail control: transforms of the delay sequence that model a system mechanism (docs/DESIGN.md §2).

Applied in the order listed in the setup, before forecasting:

    cap(d_max)            a deadline / fallback model: d <- min(d, d_max)                 (steps)
    drop_spikes(p, above) each spike is removed with probability p and redrawn from the base
    hedge(n)              n duplicate requests: d <- min over n independent draws

What counts as a spike for ``drop_spikes``: the profile's spike component (``mixture``: the spike
draws; ``bursty``: the draws made in the bad state), redrawn from the base (``mixture.base``,
``bursty.good``). With ``above`` set, a spike is any delay > ``above`` steps instead, redrawn from the
profile conditioned on ``d <= above``. Profiles without a spike component need ``above``.
Redrawn values come from the base distribution, not through earlier tail controls in the list.

Random streams are keyed by rollout (`numpy.random.SeedSequence` spawn keys under the delay seed).
Rollout b draws only from streams with spawn keys ``(b, ...)``, so its delay sequence is a pure function of
(delay seed, b): a run of N rollouts is exactly the first N rollouts of any larger run, and any subset of
rollouts can be drawn anywhere (schedule version 2; version 1 drew one [B, K] block per run, so rollout
0's delays depended on B). Under each rollout's key the layout is such that adding tail control never
changes the base draws: the profile always draws from key (b, 0), control i from (b, i+1), and replica j
of ``hedge`` at position i repeats the profile and controls 0..i-1 under keys (b, i+1, j, ...). So, draw
for draw, ``cap`` never exceeds its bound and ``hedge`` is never worse than the same seed's sequence
without it.

The profiles draw [B, K] blocks from a `RolloutGenerator`, which fills row b from rollout b's own numpy
Generator, so the profile code stays vectorized over rollouts.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from rtcbench.errors import UserError
from rtcbench.replay.base import StrictModel
from rtcbench.replay.profiles import Draw, DrawContext

_MAX_REJECTION_ROUNDS = 64


class Cap(StrictModel):
    """Bound every delay by ``d_max`` steps (a deadline after which a fallback answer is used)."""

    kind: Literal["cap"] = "cap"
    d_max: int = Field(ge=0, description="largest delay in steps")


class DropSpikes(StrictModel):
    """Remove each spike with probability ``p``; a removed spike is redrawn from the base."""

    kind: Literal["drop_spikes"] = "drop_spikes"
    p: float = Field(ge=0, le=1, description="fraction of spikes removed")
    above: int | None = Field(
        default=None, ge=0, description="a spike is a delay > above steps (needed for profiles without spikes)"
    )


class Hedge(StrictModel):
    """Send ``n`` duplicate requests; the delay is the fastest of them."""

    kind: Literal["hedge"] = "hedge"
    n: int = Field(ge=1, le=64, description="number of duplicate requests")


TailControl = Annotated[Cap | DropSpikes | Hedge, Field(discriminator="kind")]


# Seen by the config hash (rtcbench.scenario): results drawn under another version are "not comparable".
SCHEDULE_VERSION = 2


class RolloutGenerator:
    """The numpy Generator methods the profiles use, drawing row b of every [B, ...] block from rollout
    b's own stream: a Philox generator seeded by ``SeedSequence(delay_seed, spawn_key=(first_rollout + b,)
    + key)``. The per-rollout generators are made on first use (a stream that draws nothing costs nothing;
    making 2,048 of them takes about 30 ms)."""

    def __init__(self, delay_seed: int, key: tuple[int, ...], n_rollouts: int, first_rollout: int = 0):
        self._seed, self._key = int(delay_seed), tuple(key)
        self._n, self._first = int(n_rollouts), int(first_rollout)
        self._rows: list[np.random.Generator] | None = None

    def _generators(self) -> list[np.random.Generator]:
        if self._rows is None:
            self._rows = [np.random.Generator(np.random.Philox(np.random.SeedSequence(
                entropy=self._seed, spawn_key=(self._first + b, *self._key)))) for b in range(self._n)]
        return self._rows

    def _stack(self, method: str, size, *args) -> np.ndarray:
        size = (size,) if isinstance(size, int) else tuple(size)
        if not size or size[0] != self._n:
            raise ValueError(f"a block's first axis must be the {self._n} rollouts, got size {size}")
        return np.stack([getattr(g, method)(*args, size=size[1:]) for g in self._generators()])

    def random(self, size) -> np.ndarray:
        return self._stack("random", size)

    def standard_normal(self, size) -> np.ndarray:
        return self._stack("standard_normal", size)

    def integers(self, low, high, size) -> np.ndarray:
        return self._stack("integers", size, low, high)


def _rng(delay_seed: int, key: tuple[int, ...], ctx: DrawContext) -> RolloutGenerator:
    return RolloutGenerator(delay_seed, key, ctx.shape[0], ctx.first_rollout)


def _draw(profile, tails, delay_seed: int, ctx: DrawContext, root: tuple[int, ...]) -> Draw:
    draw = profile.draw(_rng(delay_seed, root + (0,), ctx), ctx)
    for i, control in enumerate(tails):
        rng = _rng(delay_seed, root + (i + 1,), ctx)
        if isinstance(control, Cap):
            draw = Draw(steps=np.minimum(draw.steps, control.d_max), spike=draw.spike)
        elif isinstance(control, DropSpikes):
            draw = _drop_spikes(profile, control, draw, rng, ctx)
        elif isinstance(control, Hedge):
            steps, spike = draw.steps, draw.spike
            for j in range(1, control.n):
                replica = _draw(profile, tails[:i], delay_seed, ctx, root + (i + 1, j))
                faster = replica.steps < steps  # ties keep the earlier request
                steps = np.where(faster, replica.steps, steps)
                spike = np.where(faster, replica.spike, spike)
            draw = Draw(steps=steps, spike=spike)
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"unknown tail control {control!r}")
    return draw


def _drop_spikes(profile, control: DropSpikes, draw: Draw, rng: RolloutGenerator, ctx: DrawContext) -> Draw:
    if control.above is None:
        if not profile.has_spikes:
            raise UserError(
                f"drop_spikes needs 'above' (a spike threshold in steps) for a '{profile.kind}' profile, "
                "which has no spike component (only 'mixture' and 'bursty' do)",
                field="tail.drop_spikes.above",
            )
        spike = draw.spike
    else:
        spike = draw.steps > control.above
    removed = spike & (rng.random(ctx.shape) < control.p)  # [B, K]
    if control.above is None:
        base = profile.redraw_base(rng, ctx)
    else:
        base = np.full(ctx.shape, -1, np.int64)
        todo = np.ones(ctx.shape, bool)
        for _ in range(_MAX_REJECTION_ROUNDS):
            candidate = profile.draw(rng, ctx).steps
            fill = todo & (candidate <= control.above)
            base[fill] = candidate[fill]
            todo &= ~fill
            if not (todo & removed).any():
                break
        else:
            raise UserError(
                f"drop_spikes(above={control.above}): the profile almost never draws a delay <= {control.above} "
                "steps, so removed spikes cannot be redrawn; raise 'above'",
                field="tail.drop_spikes.above",
            )
    return Draw(steps=np.where(removed, base, draw.steps), spike=spike & ~removed)


def draw_delays(profile, tails, delay_seed: int, ctx: DrawContext) -> np.ndarray:
    """Delays in steps after tail control: [B, K] int64 for inferences k = 1..K (ctx.shape = (B, K)) of
    rollouts ctx.first_rollout .. ctx.first_rollout + B - 1."""
    return _draw(profile, list(tails), int(delay_seed), ctx, ()).steps
