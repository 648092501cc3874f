"""Engine throughput against the limit on the same machine, in the same run (docs/DESIGN.md §7).

The measurement itself is `rtcbench.engine.limit.engine_vs_limit` (also behind `rtcbench bench`):
the engine's compiled episode (B = 64 rollouts x T steps of one size-s level) against the same physics
with the bare batched policy calls at the engine's cadence, in one scan (the cadence limit), timed
interleaved. The target ratio on a 2-core CPU is >= 0.85 of the cadence limit. The looser back-to-back
limit (physics scan + warm bare calls in a row) is printed beside it; on the CI machine in-loop policy
calls cost ~1.6x a warm back-to-back call, which no engine can avoid (see limit.py). The delay setup is a fixed d = 2 with adaptive s_min = 4
(all rollouts start together, so every policy call is used).
Run: `python -m pytest tests/bench/test_bench_engine.py --benchmark-enable -s`.
"""

from __future__ import annotations

import numpy as np
import pytest

LEVEL = "s/h8_unicycle_balance"
B, T, H, N_FLOW, REPEATS = 64, 128, 8, 5, 5
TARGET = 0.85


@pytest.fixture(scope="module")
def setup():
    from rtcbench.levels import load_level
    from rtcbench.policy.model import make_config, make_policy
    from rtcbench.replay.horizon import AdaptiveHorizon
    from rtcbench.replay.schedule import schedule_from_delays

    level = load_level(LEVEL)
    policy = make_policy(make_config("cpu", level.obs_dim, level.action_dim, H), seed=0)
    d = np.full((B, T), 2)
    sched = schedule_from_delays(d, d, horizon=AdaptiveHorizon(s_min=4), H=H, max_steps=T)
    return level, policy, sched


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["naive", "rtc"])
def test_engine_vs_limit(setup, benchmark, kind):
    from rtcbench.engine import run_cell
    from rtcbench.engine.limit import engine_vs_limit
    from rtcbench.methods.config import NaiveMethod, RTCMethod

    level, policy, sched = setup
    method = NaiveMethod() if kind == "naive" else RTCMethod()
    report = engine_vs_limit(level, policy, method, sched, H=H, n=N_FLOW, repeats=REPEATS)

    def engine():  # compiled already (cache hit): times the run only
        return run_cell(level, policy, method, sched, H=H, n=N_FLOW, env_seed=0, policy_seed=0, max_steps=T,
                        time_inference=False)

    benchmark.pedantic(engine, rounds=3, iterations=1)  # the gate compares the min of these rounds
    info = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in report.as_dict().items()
            if k != "engine_times_s"}
    benchmark.extra_info.update(info)
    print("\n" + " ".join(f"{k}={v}" for k, v in info.items()))
    assert report.wasted_policy_evals == 0  # synchronized schedule: every policy call is used
    assert report.cadence_ratio >= TARGET, (f"engine runs at {report.cadence_ratio:.2f} x the cadence limit (target "
                                            f"{TARGET}; back-to-back limit ratio {report.ratio:.2f})")
