"""Regression gate: building a schedule for 2048 rollouts x 256 steps stays well under a second.

Run with ``--benchmark-enable`` for timings; by default (``--benchmark-disable``) it runs once and the
wall-clock bound below still applies.
"""

from __future__ import annotations

import time

from rtcbench.replay.schedule import build_schedule
from rtcbench.replay.setup import DelaySetup

SETUPS = {
    "longtail_wmax_adaptive": {
        "profile": {
            "kind": "mixture",
            "base": {"kind": "categorical", "values": [1, 2, 3], "probs": [0.25, 0.5, 0.25]},
            "p_spike": 0.05,
            "d_spike": 6,
        },
        "tail": [{"kind": "hedge", "n": 2}],
        "forecaster": {"kind": "window_quantile", "q": 0.95, "b": 20, "init": 3},
        "horizon": {"kind": "adaptive", "s_min": 1},
    },
    "bursty_ewma_fixed_clock": {
        "profile": {
            "kind": "bursty",
            "good": {"kind": "lognormal", "median_ms": 40, "sigma": 0.2},
            "bad": {"kind": "lognormal", "median_ms": 160, "sigma": 0.4},
            "p_good_to_bad": 0.02,
            "p_bad_to_good": 0.15,
        },
        "forecaster": {"kind": "ewma", "alpha": 0.3, "margin": 1.0, "init": 2},
        "horizon": {"kind": "fixed_clock", "s": 1},
    },
}


def _build(setup):
    return build_schedule(setup, H=8, dt_ms=33.3, n_rollouts=2048, max_steps=256, delay_seed=0, base_dir=".")


def test_bench_build_schedule_2048x256(benchmark):
    for name, cfg in SETUPS.items():
        setup = DelaySetup.model_validate({"name": name, **cfg})
        t0 = time.perf_counter()
        sched = _build(setup)
        elapsed = time.perf_counter() - t0
        assert sched.start.shape == (2048, 256)
        assert sched.stats.n_inferences > 2048 * 50
        assert elapsed < 1.0, f"{name}: {elapsed:.3f} s"
    benchmark.pedantic(_build, args=(DelaySetup.model_validate({"name": "x", **SETUPS["longtail_wmax_adaptive"]}),),
                       rounds=5, iterations=1, warmup_rounds=1)
