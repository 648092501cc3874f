"""The deterministic delay schedule: per-rollout timing arrays that the jitted rollout consumes.

Timeline of one rollout (docs/DESIGN.md §1), H = 8, adaptive(s_min = 3), delays d_1 = 2, d_2 = 5:

    step j        0  1  2  3  4  5  6  7  8  9 10 11
    inference     k0       k1       k2             k3           (k0 is synchronous: d = s = 0)
    tau_k         0        3        6              11
    d_k           0        2        5              .
    arrive                       ^5             ^11             (chunk k lands at tau_k + d_k)
    t (index)     0  1  2  3  4  2  3  4  5  6  7  5            (t <- d_k on arrival; stall if t >= H)
    s_k           0        3        3              5            (s_k = t at tau_k = tau_k - tau_{k-1})

Facts that the code below relies on (one inference thread, so chunk k-1 has always landed by tau_k):
- ``s_k = tau_k - tau_{k-1}`` for k >= 1.
- At step j the current chunk is the one of the latest inference c with ``tau_c + d_c <= j``, and its
  action index is ``t = j - tau_c``. The step stalls (fallback action) when ``t >= H``.
- A violation (``d_k > H - s_k``) is exactly a stall during inference k's flight ``[tau_k, tau_k + d_k)``,
  or, when ``s_k > H``, an old chunk that already ran out before inference k started.

Start-up (``start``). ``sync`` (the default, docs/DESIGN.md §1): the first chunk k = 0 is computed at step 0
with no delay and its first ``s_1 + d_1`` actions run before anything else lands. ``reference``: the
start of the RTC reference's eval loop (Black et al. 2025, ``eval_flow.py``), where the loop's first
iteration samples a second chunk from the *first* observation, guided by the first chunk, so inference
k = 1 starts at step 0 as well (``tau_1 = 0``) and lands at ``d_1``::

    fixed d = 2, s = 3        step  0  1  2  3  4  5  6  7  8
    sync       inference          k0       k1       k2             chunk k0 runs steps 0..4
    reference  inference          k0,k1    k2       k3             chunk k0 runs steps 0..1 only

Under ``reference`` the prefix of k = 1 is the whole first chunk, unshifted (``shift_1 = 0``: no action
was consumed yet), while the method still sees ``s_1`` = the horizon's step (``s`` or ``s_min``), as the
reference computes its prefix weights with its execution horizon in every iteration. After the first
chunk the two timelines are the same, one inference apart. ``shift_k`` (the actions of the current chunk
consumed when inference k starts, the engine's prefix shift) equals ``s_k`` everywhere else.

``s_k`` is kept raw: under ``fixed_clock`` with a delay well above s, or after a delay longer than H,
``s_k`` can exceed H. The prefix ``A[s_k:]`` is then empty (all padding) and the inference is a violation
whatever its delay. Forecasts ``dhat_k`` are kept raw too (they may exceed ``H - s_k``); a method clips
them to the prefix it actually has.

Everything here is numpy on the host, vectorized over rollouts (loops run over inference index k only
where the recursion needs it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtcbench.replay.horizon import AdaptiveHorizon, FixedClockHorizon
from rtcbench.replay.profiles import MAX_DELAY_STEPS
from rtcbench.stats import nearest_rank_percentile


@dataclass(frozen=True)
class ScheduleStats:
    """Statistics of a schedule over inferences k >= 1 that start before max_steps (k = 0 is synchronous).

    d percentiles use the true delays (under ``world_pauses`` too, where they become pauses).
    Violation, forecast-miss and over-forecast rates and ``dhat`` describe the control timeline the
    method sees: with ``world_pauses`` every control delay is 0, so they are 0.
    Percentiles are nearest-rank (`rtcbench.stats.nearest_rank_percentile`): always a delay that occurred. All fields are NaN when no inference k >= 1
    starts (max_steps too short).
    """

    n_inferences: int  # count of inferences k >= 1 over all rollouts
    d_p50: float
    d_p95: float
    d_p99: float
    d_max: float
    d_mean: float
    dhat_p50: float
    dhat_p95: float
    dhat_p99: float
    violation_rate: float  # P(d_k > H - s_k)
    forecast_miss_rate: float  # P(d_k > dhat_k)
    over_forecast_rate: float  # P(d_k < dhat_k)
    stall_fraction: float  # stall steps / (B * T)
    mean_execution_horizon: float  # mean s_k

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Schedule:
    """Timing of every rollout of a cell. B = rollouts, K = max inferences per rollout, T = max_steps.

    Per-inference arrays are padded to K; entries with ``k >= n_inferences[b]`` are 0.
    ``d`` and ``start_d`` are the control-timeline delays (0 everywhere under ``world_pauses``);
    ``d_true`` always holds the drawn delays (equal to ``d`` unless ``world_pauses``).
    """

    tau: np.ndarray  # [B, K] int32 start step of inference k
    d: np.ndarray  # [B, K] int32 delay in steps (control timeline)
    dhat: np.ndarray  # [B, K] int32 forecast of d
    s: np.ndarray  # [B, K] int32 actions consumed from the current chunk at tau
    n_inferences: np.ndarray  # [B] int32
    start: np.ndarray  # [B, T] bool an inference starts here (after any swap at this step)
    start_d: np.ndarray  # [B, T] int32
    start_dhat: np.ndarray  # [B, T] int32
    start_s: np.ndarray  # [B, T] int32
    arrive: np.ndarray  # [B, T] bool a chunk from an earlier step lands here (swap first)
    stall: np.ndarray  # [B, T] bool current chunk exhausted (t >= H): fallback action runs
    pause: np.ndarray  # [B, T] int32 world waits this many wall steps (world_pauses only)
    stats: ScheduleStats
    H: int
    world_pauses: bool
    d_true: np.ndarray  # [B, K] int32 drawn delays (== d unless world_pauses)
    # [B, K] int32 actions of the current chunk consumed when inference k starts (the prefix shift);
    # equal to s except inference 1 under start="reference" (0). None: equal to s.
    shift: np.ndarray | None = None
    start_shift: np.ndarray | None = None  # [B, T] int32 shift at each start step (None: start_s)
    reference_start: bool = False  # start="reference": inference 1 runs at step 0 after the first chunk

    def __post_init__(self):
        if self.shift is None:
            object.__setattr__(self, "shift", self.s)
        if self.start_shift is None:
            object.__setattr__(self, "start_shift", self.start_s)

    @property
    def n_rollouts(self) -> int:
        return int(self.tau.shape[0])

    @property
    def max_steps(self) -> int:
        return int(self.start.shape[1])

    def rollouts(self, lo: int, hi: int) -> Schedule:
        """Rows [lo, hi) of every per-rollout array: the schedule of a shard of the cell's rollouts.

        ``stats`` stays the whole cell's (a shard is computed, never reported, on its own). Run it with
        ``run_cell(..., first_rollout=lo)`` so that its rollouts keep the whole cell's keys.
        """
        if not 0 <= lo < hi <= self.n_rollouts:
            raise ValueError(f"rollouts [{lo}, {hi}) are not within the schedule's {self.n_rollouts}")
        rows = {f.name: getattr(self, f.name)[lo:hi] for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}
        return dataclasses.replace(self, **rows)

    @property
    def valid(self) -> np.ndarray:
        """[B, K] bool: inference k exists (starts before max_steps)."""
        return np.arange(self.tau.shape[1])[None, :] < self.n_inferences[:, None]

    @property
    def violation(self) -> np.ndarray:
        """[B, K] bool: d_k > H - shift_k (the current chunk runs out in flight), for existing k >= 1.
        shift_k = s_k except inference 1 under start="reference"."""
        return self._k_ge_1() & (self.d > self.H - self.shift)

    @property
    def forecast_miss(self) -> np.ndarray:
        """[B, K] bool: d_k > dhat_k (actions in [dhat_k, d_k) were executed but not frozen)."""
        return self._k_ge_1() & (self.d > self.dhat)

    @property
    def over_forecast(self) -> np.ndarray:
        """[B, K] bool: d_k < dhat_k (more actions frozen than needed)."""
        return self._k_ge_1() & (self.d < self.dhat)

    def _k_ge_1(self) -> np.ndarray:
        mask = self.valid.copy()
        mask[:, 0] = False
        return mask


def _next_starts(d_all: np.ndarray, horizon, max_steps: int) -> np.ndarray:
    """Start steps of inferences 0..K_raw+1 from the control delays of inferences 0..K_raw.

    d_all: [B, K_raw + 1] int64 with column 0 = 0 (the synchronous first chunk).
    Returns tau: [B, K_raw + 2] int64, tau[:, 0] = 0. Entries after a rollout passes max_steps are
    only guaranteed to be >= max_steps.
    """
    B, K1 = d_all.shape
    if isinstance(horizon, AdaptiveHorizon):
        gaps = np.maximum(d_all, horizon.s_min)  # [B, K1]
        tau = np.zeros((B, K1 + 1), np.int64)
        np.cumsum(gaps, axis=1, out=tau[:, 1:])
        return tau
    if isinstance(horizon, FixedClockHorizon):
        s = horizon.s
        tau = np.full((B, K1 + 1), np.iinfo(np.int64).max // 4, np.int64)
        tau[:, 0] = 0
        for k in range(K1):
            landed = tau[:, k] + d_all[:, k]  # [B] step where chunk k lands
            next_tick = -(-landed // s) * s  # first tick >= landing
            tau[:, k + 1] = np.maximum(tau[:, k] + s, next_tick)
            if (tau[:, k + 1] >= max_steps).all():
                break
        return tau
    raise TypeError(f"unknown horizon policy {horizon!r}")


def schedule_from_delays(
    d: np.ndarray,
    dhat: np.ndarray,
    *,
    horizon,
    H: int,
    max_steps: int,
    world_pauses: bool = False,
    start: str = "sync",
) -> Schedule:
    """Build the schedule from given delays and forecasts of inferences k = 1, 2, ...

    d, dhat: [B, K_raw] integer arrays (steps) for k = 1..K_raw. The synchronous first chunk k = 0 at
    step 0 (d = dhat = s = 0) is added here. K_raw must cover max_steps: the inference after the last
    given one must start at or after max_steps (``K_raw >= (max_steps - 1) // horizon.min_step`` always
    suffices). ``horizon`` is an `AdaptiveHorizon` or `FixedClockHorizon`.

    With ``world_pauses`` (method ``sync``) the control timeline uses d = dhat = 0 and the drawn delays
    become ``pause`` at each start step. ``start``: ``sync`` or ``reference`` (see the module docstring).
    """
    if start not in ("sync", "reference"):
        raise ValueError(f"start must be 'sync' or 'reference', got {start!r}")
    reference = start == "reference"
    d = np.asarray(d)
    dhat = np.asarray(dhat)
    if d.ndim != 2 or d.shape != dhat.shape:
        raise ValueError(f"d and dhat must be [B, K_raw] arrays of the same shape, got {d.shape} and {dhat.shape}")
    if not (np.issubdtype(d.dtype, np.integer) and np.issubdtype(dhat.dtype, np.integer)):
        raise ValueError("d and dhat must be integer arrays (steps)")
    if (d < 0).any() or (dhat < 0).any():
        raise ValueError("delays and forecasts must be >= 0")
    if H < 1 or max_steps < 1:
        raise ValueError("H and max_steps must be >= 1")
    B, K_raw = d.shape
    T = int(max_steps)

    zero_col = np.zeros((B, 1), np.int64)
    d_true_all = np.concatenate([zero_col, np.minimum(d, MAX_DELAY_STEPS).astype(np.int64)], axis=1)  # [B, K_raw+1]
    dhat_all = np.concatenate([zero_col, np.minimum(dhat, MAX_DELAY_STEPS).astype(np.int64)], axis=1)
    if world_pauses:
        d_ctrl_all = np.zeros_like(d_true_all)
        dhat_ctrl_all = np.zeros_like(dhat_all)
    else:
        d_ctrl_all, dhat_ctrl_all = d_true_all, dhat_all

    if reference:  # inference 1 at step 0, then the horizon's rule from there
        tau_all = np.concatenate([zero_col, _next_starts(d_ctrl_all[:, 1:], horizon, T)], axis=1)
    else:
        tau_all = _next_starts(d_ctrl_all, horizon, T)  # [B, K_raw + 2]
    if (tau_all[:, K_raw + 1] < T).any():
        raise ValueError(
            f"{K_raw} delays per rollout do not cover max_steps={T}: pass at least {(T - 1) // horizon.min_step}"
        )

    n_inf = (tau_all[:, : K_raw + 1] < T).sum(axis=1).astype(np.int32)  # [B] (tau non-decreasing)
    K = int(n_inf.max())
    valid = np.arange(K)[None, :] < n_inf[:, None]  # [B, K]

    tau = np.where(valid, tau_all[:, :K], 0)  # [B, K]
    s = np.zeros((B, K), np.int64)
    s[:, 1:] = tau_all[:, 1:K] - tau_all[:, : K - 1]
    s = np.where(valid, s, 0)
    shift = s.copy()  # actions of the current chunk consumed at tau_k
    if reference and K > 1:
        s[:, 1] = np.where(valid[:, 1], horizon.min_step, 0)  # what the reference's method sees
    d_ctrl = np.where(valid, d_ctrl_all[:, :K], 0)
    dhat_ctrl = np.where(valid, dhat_ctrl_all[:, :K], 0)
    d_true = np.where(valid, d_true_all[:, :K], 0)

    # ---- per-step arrays [B, T]. Under `reference`, k = 0 and k = 1 share step 0; the step's entries are
    # those of k = 1 (k = 0 is the synchronous first chunk, computed before the scan).
    on_steps = valid.copy()
    if reference:
        on_steps[:, 0] = False
    rows = np.broadcast_to(np.arange(B)[:, None], (B, K))[on_steps]  # [N] rollout of each inference
    starts = tau[on_steps]  # [N]
    start = np.zeros((B, T), bool)
    start[rows, starts] = True
    start_d = np.zeros((B, T), np.int32)
    start_d[rows, starts] = d_ctrl[on_steps]
    start_dhat = np.zeros((B, T), np.int32)
    start_dhat[rows, starts] = dhat_ctrl[on_steps]
    start_s = np.zeros((B, T), np.int32)
    start_s[rows, starts] = s[on_steps]
    start_shift = np.zeros((B, T), np.int32)
    start_shift[rows, starts] = shift[on_steps]

    landing = tau + d_ctrl  # [B, K] step where chunk k lands
    lands_in_run = valid & (landing < T)
    arrive = np.zeros((B, T), bool)
    later = lands_in_run & (d_ctrl > 0)
    arrive[np.nonzero(later)[0], landing[later]] = True

    # Start step of the chunk in use at each step: mark each landing step with the chunk's tau, then
    # carry forward. Landing steps are non-decreasing in k; where two chunks land on the same step
    # (a d = 0 inference started on the landing step of its predecessor) the later one wins.
    next_lands_same = np.zeros((B, K), bool)
    next_lands_same[:, :-1] = lands_in_run[:, 1:] & (landing[:, 1:] == landing[:, :-1])
    keep = lands_in_run & ~next_lands_same
    chunk_tau = np.full((B, T), -1, np.int64)
    chunk_tau[np.nonzero(keep)[0], landing[keep]] = tau[keep]
    np.maximum.accumulate(chunk_tau, axis=1, out=chunk_tau)  # [B, T] (>= 0: chunk 0 lands at step 0)
    t_index = np.arange(T)[None, :] - chunk_tau  # [B, T] action index t in the current chunk
    stall = t_index >= H

    pause = np.zeros((B, T), np.int32)
    if world_pauses:
        pause[rows, starts] = d_true[on_steps]

    stats = _stats(d_true, d_ctrl, dhat_ctrl, s, shift, valid, stall, H)
    i32 = lambda a: np.ascontiguousarray(a, dtype=np.int32)
    return Schedule(
        tau=i32(tau),
        d=i32(d_ctrl),
        dhat=i32(dhat_ctrl),
        s=i32(s),
        n_inferences=n_inf,
        start=start,
        start_d=start_d,
        start_dhat=start_dhat,
        start_s=start_s,
        arrive=arrive,
        stall=stall,
        pause=pause,
        stats=stats,
        H=int(H),
        world_pauses=bool(world_pauses),
        d_true=i32(d_true),
        shift=i32(shift),
        start_shift=start_shift,
        reference_start=reference,
    )


def _stats(d_true, d_ctrl, dhat_ctrl, s, shift, valid, stall, H) -> ScheduleStats:
    mask = valid.copy()
    mask[:, 0] = False  # k = 0 is synchronous
    n = int(mask.sum())
    stall_fraction = float(stall.mean()) if stall.size else float("nan")
    if n == 0:
        nan = float("nan")
        return ScheduleStats(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, stall_fraction, nan)
    dt = d_true[mask]  # [n]
    dc = d_ctrl[mask]
    dh = dhat_ctrl[mask]
    sk = s[mask]
    shk = shift[mask]
    d_p = nearest_rank_percentile(dt, [50, 95, 99])
    dhat_p = nearest_rank_percentile(dh, [50, 95, 99])
    return ScheduleStats(
        n_inferences=n,
        d_p50=float(d_p[0]),
        d_p95=float(d_p[1]),
        d_p99=float(d_p[2]),
        d_max=float(dt.max()),
        d_mean=float(dt.mean()),
        dhat_p50=float(dhat_p[0]),
        dhat_p95=float(dhat_p[1]),
        dhat_p99=float(dhat_p[2]),
        violation_rate=float((dc > H - shk).mean()),
        forecast_miss_rate=float((dc > dh).mean()),
        over_forecast_rate=float((dc < dh).mean()),
        stall_fraction=stall_fraction,
        mean_execution_horizon=float(sk.mean()),
    )


def n_delays_needed(horizon, max_steps: int) -> int:
    """Delays per rollout (for k = 1, 2, ...) that always cover max_steps under this horizon policy."""
    return max(1, (int(max_steps) - 1) // horizon.min_step + 1)


def build_schedule(
    setup,
    *,
    H: int,
    dt_ms: float,
    n_rollouts: int,
    max_steps: int,
    delay_seed: int,
    base_dir: str | Path,
    world_pauses: bool = False,
) -> Schedule:
    """Draw delays from the setup's profile, apply its tail control and forecaster, and build the schedule.

    setup: a `rtcbench.replay.setup.DelaySetup` (profile, tail, forecaster, horizon). Latencies in ms
    become ``d = ceil(L / dt_ms)`` steps. Trace paths resolve against ``base_dir`` (the scenario's
    directory). Delays are always drawn as [n_rollouts, max_steps] whatever the horizon policy, so two
    setups with the same profile, tail control and seed see the same delay sequence (common random
    numbers); the forecast for inference k uses only d_1..d_{k-1}.
    """
    from rtcbench.replay.forecast import forecast
    from rtcbench.replay.profiles import DrawContext
    from rtcbench.replay.tail import draw_delays

    ctx = DrawContext(dt_ms=float(dt_ms), base_dir=Path(base_dir), shape=(int(n_rollouts), int(max_steps)))
    d = draw_delays(setup.profile, setup.tail, int(delay_seed), ctx)  # [B, T] int64 steps for k = 1..T
    K_raw = n_delays_needed(setup.horizon, max_steps)
    d = d[:, :K_raw]
    dhat = forecast(setup.forecaster, d)  # [B, K_raw]
    return schedule_from_delays(d, dhat, horizon=setup.horizon, H=H, max_steps=max_steps, world_pauses=world_pauses,
                                start=setup.start)
