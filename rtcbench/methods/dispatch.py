"""One dispatch from a method config to its implementation.

Every implementation has the signature ``fn(policy, obs, prefix, dhat, s, key) -> (chunk, Cost)`` with
obs [B, O], prefix [B, H, A] (= A[s:] padded to H), dhat [B], s [B], key [B, 2] (one key per rollout).
Static parameters (n, the RTC schedule and beta, BID's N, ...) are bound here. ``a2c2`` is its base
method's implementation with ``corrects=True`` (the engine then corrects every executed action) and one head
evaluation per control step in its cost.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from rtcbench.methods import bid, naive, rtc, sync, te, ttrtc, vlash
from rtcbench.methods.naive import Cost


@dataclass(frozen=True)
class MethodImpl:
    kind: str
    fn: Callable  # (policy, obs, prefix, dhat, s, key) -> (chunk [B, H, A], Cost)
    cost: Cost  # per rollout per inference
    world_pauses: bool = False  # sync: the schedule must be built with world_pauses=True
    ensemble_m: float | None = None  # te: execution averages arrived predictions
    uses_weak: bool = False  # bid with a forward contrast: fn takes weak=<module>
    corrects: bool = False  # a2c2: the engine adds the policy's correction to every executed chunk action


def make_method(cfg, *, n: int, has_weak: bool = False) -> MethodImpl:
    """cfg: a MethodConfig (rtcbench.methods.config). n: Euler steps."""
    kind = cfg.kind
    if kind == "a2c2":
        base = make_method(cfg.base, n=n, has_weak=False)
        return replace(base, kind=kind, cost=base.cost._replace(head_evals=1), corrects=True)
    if kind == "naive":
        return MethodImpl(kind, functools.partial(naive.naive_chunk, n=n), Cost(n, 0))
    if kind == "rtc":
        fn = functools.partial(rtc.rtc_chunk, n=n, schedule=cfg.schedule, beta=float(cfg.beta))
        return MethodImpl(kind, fn, Cost(n, n))
    if kind == "bid":
        use_weak = bool(cfg.weak_policy) and has_weak
        fn = functools.partial(bid.bid_chunk, n=n, n_samples=cfg.n_samples, n_weak=cfg.n_weak_samples, k=cfg.contrast_k)
        nfe = cfg.n_samples * n + (cfg.n_weak_samples * n if use_weak else 0)
        return MethodImpl(kind, fn, Cost(nfe, 0), uses_weak=use_weak)
    if kind == "te":
        return MethodImpl(kind, functools.partial(te.te_chunk, n=n), Cost(n, 0), ensemble_m=float(cfg.m))
    if kind == "sync":
        return MethodImpl(kind, functools.partial(sync.sync_chunk, n=n), Cost(n, 0), world_pauses=sync.WORLD_PAUSES)
    if kind == "ttrtc":
        return MethodImpl(kind, functools.partial(ttrtc.ttrtc_chunk, n=n), Cost(n, 0))
    if kind == "vlash":
        return MethodImpl(kind, functools.partial(vlash.vlash_chunk, n=n), Cost(n, 0))
    raise ValueError(f"unknown method kind {kind!r}")
