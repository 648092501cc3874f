"""Delay profiles: versioned pydantic models that draw per-inference delays, in control steps.

Units: each profile is in ms or in steps, as its field names say (``d``, ``values``, ``d_spike`` are
steps; ``*_ms`` are ms). A latency of L ms becomes ``d = ceil(L / dt_ms)`` steps (`ms_to_steps`).

    kind         parameters                                    spikes (for drop_spikes)
    fixed        d (steps)                                     none
    categorical  values (steps), probs                         none
    lognormal    median_ms, sigma, shift_ms                    none
    pareto       scale_ms, alpha, shift_ms                     none
    mixture      base (one of the four above), p_spike, d_spike    the spike component
    bursty       good, bad (one of the four above each),       the draws made in the bad state
                 p_good_to_bad, p_bad_to_good (per inference)
    trace        path, mode (sequential | resample), offset    none

Every profile draws a whole [B, K] block from one numpy Generator (row b = rollout b, column k-1 =
inference k), so a profile with the same Generator state always gives the same block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from rtcbench.replay.base import StrictModel

MAX_DELAY_STEPS = 1 << 30  # clip: any delay >= max_steps already gives the same timeline


def ms_to_steps(ms, dt_ms: float) -> np.ndarray:
    """Latency in ms -> delay in steps, ``ceil(ms / dt_ms)``.

    A tolerance of 1e-9 steps absorbs float rounding, so that e.g. 66.6 ms at dt_ms = 33.3 is 2 steps
    (66.6 / 33.3 is 2.0000000000000004 in floating point), as exact decimal arithmetic gives.
    """
    steps = np.ceil(np.asarray(ms, np.float64) / float(dt_ms) - 1e-9)
    return np.clip(steps, 0, MAX_DELAY_STEPS).astype(np.int64)


class BlockRng(Protocol):
    """What a profile draws from: [B, ...] blocks whose row b comes from rollout b's own stream
    (`rtcbench.replay.tail.RolloutGenerator`; a plain numpy Generator also fits, for tests)."""

    def random(self, size) -> np.ndarray: ...

    def standard_normal(self, size) -> np.ndarray: ...

    def integers(self, low, high, size) -> np.ndarray: ...


@dataclass
class DrawContext:
    """What a profile needs besides its Generator: the step length, where traces live, the block shape."""

    dt_ms: float
    base_dir: Path
    shape: tuple[int, int]  # (B, K)
    traces: dict = field(default_factory=dict)  # resolved path -> delays in steps [N], loaded once
    first_rollout: int = 0  # row b of a block is rollout first_rollout + b (its own random stream)


@dataclass
class Draw:
    steps: np.ndarray  # [B, K] int64 delays in steps
    spike: np.ndarray  # [B, K] bool drawn from the profile's spike component (mixture, bursty)


# ---------------------------------------------------------------------------------------------- simple


class _NoSpikes:
    """Draw interface of the simple profiles: ``sample`` gives the steps; there is no spike component."""

    has_spikes: ClassVar[bool] = False

    def draw(self, rng: BlockRng, ctx: DrawContext) -> Draw:
        steps = self.sample(rng, ctx)
        return Draw(steps=steps, spike=np.zeros(ctx.shape, bool))

    def trace_paths(self) -> list[str]:
        return []


class FixedProfile(_NoSpikes, StrictModel):
    """A constant delay of d steps."""

    kind: Literal["fixed"] = "fixed"
    d: int = Field(ge=0, description="delay in steps")

    def sample(self, rng: BlockRng, ctx: DrawContext) -> np.ndarray:
        return np.full(ctx.shape, self.d, np.int64)


class CategoricalProfile(_NoSpikes, StrictModel):
    """A categorical distribution over delays in steps."""

    kind: Literal["categorical"] = "categorical"
    values: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, description="delays in steps")
    probs: list[Annotated[float, Field(ge=0)]] = Field(min_length=1, description="probabilities, summing to 1")

    @model_validator(mode="after")
    def _probs(self):
        if len(self.probs) != len(self.values):
            raise ValueError(f"'probs' has {len(self.probs)} entries but 'values' has {len(self.values)}; they must match")
        if abs(sum(self.probs) - 1.0) > 1e-6:
            raise ValueError(f"'probs' must sum to 1, got {sum(self.probs):.6g}")
        return self

    def sample(self, rng: BlockRng, ctx: DrawContext) -> np.ndarray:
        cdf = np.cumsum(np.asarray(self.probs, np.float64))
        cdf /= cdf[-1]
        idx = np.searchsorted(cdf, rng.random(ctx.shape), side="right")  # [B, K]
        return np.asarray(self.values, np.int64)[np.minimum(idx, len(self.values) - 1)]


class LognormalProfile(_NoSpikes, StrictModel):
    """``shift_ms + X`` with X lognormal of median ``median_ms`` and log-std ``sigma``."""

    kind: Literal["lognormal"] = "lognormal"
    median_ms: float = Field(gt=0)
    sigma: float = Field(ge=0)
    shift_ms: float = Field(default=0.0, ge=0, description="fixed minimum latency added to every draw")

    def sample(self, rng: BlockRng, ctx: DrawContext) -> np.ndarray:
        with np.errstate(over="ignore"):
            ms = self.shift_ms + self.median_ms * np.exp(self.sigma * rng.standard_normal(ctx.shape))
        return ms_to_steps(ms, ctx.dt_ms)


class ParetoProfile(_NoSpikes, StrictModel):
    """``shift_ms + X`` with X Pareto (type I): P(X > x) = (scale_ms / x)^alpha for x >= scale_ms."""

    kind: Literal["pareto"] = "pareto"
    scale_ms: float = Field(gt=0)
    alpha: float = Field(gt=0, description="tail index; smaller is heavier (alpha <= 2: infinite variance)")
    shift_ms: float = Field(default=0.0, ge=0)

    def sample(self, rng: BlockRng, ctx: DrawContext) -> np.ndarray:
        u = 1.0 - rng.random(ctx.shape)  # (0, 1]
        with np.errstate(over="ignore"):
            ms = self.shift_ms + self.scale_ms * u ** (-1.0 / self.alpha)
        return ms_to_steps(np.minimum(ms, 1e300), ctx.dt_ms)


SimpleDist = Annotated[
    FixedProfile | CategoricalProfile | LognormalProfile | ParetoProfile, Field(discriminator="kind")
]


# ------------------------------------------------------------------------------------------- composite


class MixtureProfile(StrictModel):
    """The long-tail model: a base distribution plus, with probability ``p_spike``, a spike of ``d_spike`` steps."""

    kind: Literal["mixture"] = "mixture"
    base: SimpleDist
    p_spike: float = Field(ge=0, le=1)
    d_spike: int = Field(ge=0, description="spike delay in steps")

    has_spikes: ClassVar[bool] = True

    def draw(self, rng: BlockRng, ctx: DrawContext) -> Draw:
        base = self.base.sample(rng, ctx)  # [B, K]
        spike = rng.random(ctx.shape) < self.p_spike  # [B, K]
        return Draw(steps=np.where(spike, np.int64(self.d_spike), base), spike=spike)

    def redraw_base(self, rng: BlockRng, ctx: DrawContext) -> np.ndarray:
        return self.base.sample(rng, ctx)

    def trace_paths(self) -> list[str]:
        return []


class BurstyProfile(StrictModel):
    """Gilbert-Elliott: a 2-state Markov chain over inferences; each state has its own delay distribution.

    The chain starts in its stationary distribution, P(bad) = p_good_to_bad / (p_good_to_bad + p_bad_to_good),
    and moves once per inference. Mean burst length is 1 / p_bad_to_good inferences.
    """

    kind: Literal["bursty"] = "bursty"
    has_spikes: ClassVar[bool] = True
    good: SimpleDist
    bad: SimpleDist
    p_good_to_bad: float = Field(ge=0, le=1)
    p_bad_to_good: float = Field(gt=0, le=1)

    def draw(self, rng: BlockRng, ctx: DrawContext) -> Draw:
        B, K = ctx.shape
        u = rng.random((B, K))
        bad = np.empty((B, K), bool)  # [B, K] state of inference k
        p_bad = self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)
        bad[:, 0] = u[:, 0] < p_bad
        for k in range(1, K):
            bad[:, k] = np.where(bad[:, k - 1], u[:, k] >= self.p_bad_to_good, u[:, k] < self.p_good_to_bad)
        good_steps = self.good.sample(rng, ctx)
        bad_steps = self.bad.sample(rng, ctx)
        return Draw(steps=np.where(bad, bad_steps, good_steps), spike=bad)

    def redraw_base(self, rng: BlockRng, ctx: DrawContext) -> np.ndarray:
        return self.good.sample(rng, ctx)

    def trace_paths(self) -> list[str]:
        return []


class TraceProfile(StrictModel):
    """Replay a recorded trace file (bench/traces format, latencies in ms).

    ``sequential``: rollout b replays the trace in order from offset o_b (wrapping around at the end);
    ``offset: random`` draws o_b uniformly per rollout; an integer uses the same offset (modulo the trace
    length) for all rollouts.
    ``resample``: i.i.d. draws from the trace's latencies.
    """

    kind: Literal["trace"] = "trace"
    has_spikes: ClassVar[bool] = False
    path: str = Field(min_length=1, description="trace file; relative paths resolve against the scenario's directory")
    mode: Literal["sequential", "resample"] = "sequential"
    offset: Literal["random"] | Annotated[int, Field(ge=0)] = "random"

    def resolve(self, base_dir: str | Path) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else Path(base_dir) / p

    def steps_of_trace(self, ctx: DrawContext) -> np.ndarray:
        from rtcbench.replay.traces import read_trace

        path = self.resolve(ctx.base_dir).resolve()
        key = (str(path), ctx.dt_ms)
        if key not in ctx.traces:
            ctx.traces[key] = ms_to_steps(read_trace(path).latencies_ms, ctx.dt_ms)  # [N]
        return ctx.traces[key]

    def draw(self, rng: BlockRng, ctx: DrawContext) -> Draw:
        trace = self.steps_of_trace(ctx)  # [N]
        n = trace.shape[0]
        B, K = ctx.shape
        if self.mode == "resample":
            idx = rng.integers(0, n, size=(B, K))
        else:
            if self.offset == "random":
                offsets = rng.integers(0, n, size=B)
            else:
                offsets = np.full(B, self.offset % n)
            idx = (offsets[:, None] + np.arange(K)[None, :]) % n  # [B, K]
        return Draw(steps=trace[idx], spike=np.zeros((B, K), bool))

    def trace_paths(self) -> list[str]:
        return [self.path]


DelayProfile = Annotated[
    FixedProfile
    | CategoricalProfile
    | LognormalProfile
    | ParetoProfile
    | MixtureProfile
    | BurstyProfile
    | TraceProfile,
    Field(discriminator="kind"),
]

PROFILE_KINDS = ("fixed", "categorical", "lognormal", "pareto", "mixture", "bursty", "trace")

