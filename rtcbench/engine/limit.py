"""Engine throughput against the limit of the same machine, measured in the same run (docs/DESIGN.md §7).

    engine   run_cell's compiled episode: B rollouts x T steps of one level, one method, one schedule
    limit    a physics-only scan of the same B x T env steps (the engine's keys, noise actions)
             + as many bare batched policy calls (compiled, warm) as the engine made, first chunk included,
             timed back to back                                     -> limit_steps_per_s, ratio
    cadence  ONE compiled scan that steps the same physics and calls the method's bare chunk function
             on the real observation at exactly the steps where the engine called it (under the
             same lax.cond as docs/DESIGN.md §7 prescribes), first chunk before the scan; no action buffer,
             no swap, no metrics                                    -> cadence_limit_steps_per_s,
                                                                       cadence_ratio (the gate)

``ratio = engine env-steps/s / limit env-steps/s``. Why two limits: a policy call between physics steps
runs with its weights and activations out of cache and inside a loop body, and on some CPUs that costs
more than a warm back-to-back call. On the CI machine (stop 15) the naive engine took 1.54-1.73 s where
physics alone took 0.93 s, i.e. about 19-22 ms per in-loop policy call against 12 ms back to back, and
the split ratio read 0.81 and 0.83 in two runs. No engine can beat that cost, so the gate
(tests/bench/test_bench_engine.py, >= 0.85) compares against the cadence limit: the physics and the
policy calls at the engine's cadence, with nothing else. What the cadence ratio then measures is what
the engine adds on top: schedule inputs, the chunk buffer and swap, prefix shifting, key derivation and
metrics. The split ratio stays in the report (and in docs/study/bench_cpu.jsonl, which predates the
cadence limit) as the looser, machine-dependent reading.

The three are timed interleaved, ``repeats`` times,
so that load from other processes hits all of them alike, and the *fastest* repeat of each is compared:
load only ever adds time, so the minimum is the best estimate of what the code itself costs (the rule
``timeit`` follows). Medians were used before: on a shared 2-core CI machine the five engine repeats of one
run ranged from 1.24 to 1.91 s, and the median ratio fell to 0.83 under a 0.85 gate. Used by
``rtcbench bench`` and by the pytest-benchmark gate in ``tests/bench/test_bench_engine.py``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import jax
import numpy as np

from rtcbench.engine.rollout import action_noise, env_reset_keys, env_rollout_keys, env_step_keys


def physics_only(level, B: int, T: int):
    """-> (compile seconds, run) where ``run()`` times one jitted scan of B x T env steps (seconds),
    with the engine's env keys and 0.5-std noise actions (no policy)."""
    Ad = level.action_dim

    def physics(env_params, seed):
        ek = env_rollout_keys(seed, B)
        _, state = jax.vmap(level.env.reset, (0, None))(env_reset_keys(ek), env_params)

        def body(state, j):
            sk, nk = env_step_keys(ek, j)
            _, state, reward, *_ = jax.vmap(level.env.step, (0, 0, 0, None))(sk, state, 5 * action_noise(nk, Ad),
                                                                             env_params)
            return state, reward

        return jax.lax.scan(body, state, np.arange(T, dtype=np.int32))[1]

    return _compile_and_time(physics, (level.env_params, np.uint32(0)))


def _compile_and_time(fn, args):
    """-> (compile seconds, run): `fn` jitted and compiled for `args`; ``run()`` times one call (seconds)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0

    def run() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        return time.perf_counter() - t0

    return compile_s, run


def physics_with_policy(level, method, graphdef, pol_state, obs_row, call_steps, *, B: int, T: int, H: int,
                        n: int):
    """-> (compile seconds, run): one jitted scan of B x T env steps (as `physics_only`) that also calls the
    method's chunk function on the current observation [B, O] where call_steps[j] (bool [T], traced),
    plus once before the scan (the synchronous first chunk). The chunks are carried and returned, so no
    call is dead code. Inputs other than obs are fixed (rtcbench.engine.timing.inference_inputs)."""
    import flax.nnx as nnx
    import jax.numpy as jnp

    from rtcbench.engine.timing import inference_inputs
    from rtcbench.methods.dispatch import make_method

    impl = make_method(method, n=n)
    if impl.uses_weak:
        raise ValueError("the cadence limit is not defined for BID with a weak policy")
    Ad = level.action_dim
    _, prefix, dhat, s, keys = inference_inputs(obs_row, B, H, Ad)

    def run_scan(env_params, pol_state, calls, seed):
        policy = nnx.merge(graphdef, pol_state)
        ek = env_rollout_keys(seed, B)
        obs, state = jax.vmap(level.env.reset, (0, None))(env_reset_keys(ek), env_params)
        chunk = impl.fn(policy, obs, prefix, dhat, s, keys)[0].astype(jnp.float32)  # [B, H, A]

        def body(carry, x):
            state, obs, chunk = carry
            j, call = x
            chunk = jax.lax.cond(call, lambda: impl.fn(policy, obs, prefix, dhat, s, keys)[0].astype(jnp.float32),
                                 lambda: chunk)
            sk, nk = env_step_keys(ek, j)
            obs, state, reward, *_ = jax.vmap(level.env.step, (0, 0, 0, None))(sk, state, 5 * action_noise(nk, Ad),
                                                                               env_params)
            return (state, obs, chunk), reward

        (_, _, chunk), rewards = jax.lax.scan(body, (state, obs, chunk), (np.arange(T, dtype=np.int32), calls))
        return rewards, chunk

    return _compile_and_time(run_scan, (level.env_params, pol_state, np.asarray(call_steps, bool), np.uint32(0)))


@dataclass(frozen=True)
class LimitReport:
    """Fastest of the interleaved repeats. Steps/s count B x T simulated env steps."""

    method: str
    B: int
    T: int
    compile_s: float  # the engine's episode
    physics_compile_s: float
    engine_steps_per_s: float
    physics_only_steps_per_s: float
    limit_steps_per_s: float  # physics-only time + bare policy time (back to back)
    ratio: float  # engine / limit
    cadence_limit_steps_per_s: float  # physics + policy calls at the engine's cadence, one scan
    cadence_ratio: float  # engine / cadence limit (the gate)
    policy_calls: int  # batched policy calls the engine made, first chunk included
    inference_ms: float  # median ms of one bare batched call
    wasted_policy_evals: int
    device: str
    engine_times_s: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def engine_vs_limit(level, policy, method, schedule, *, H: int, n: int, repeats: int = 5) -> LimitReport:
    """Time ``run_cell`` against physics-only + bare policy calls on this machine (see module docstring)."""
    from rtcbench.engine.cell import policy_parts, run_cell
    from rtcbench.engine.timing import inference_times

    B, T = np.asarray(schedule.start).shape

    def engine(time_inference=False):
        return run_cell(level, policy, method, schedule, H=H, n=n, env_seed=0, policy_seed=0, max_steps=T,
                        inference_repeats=10, time_inference=time_inference)

    first = engine(time_inference=True)  # compiles; also measures the bare policy call (inference_ms)
    phys_compile_s, physics = physics_only(level, B, T)
    graphdef, state, _ = policy_parts(policy)
    obs_row, _ = level.reset(jax.random.PRNGKey(0))
    n_calls = first.policy_calls + 1  # + the synchronous first chunk

    def bare_policy() -> float:  # n_calls bare batched policy calls, compiled and warm
        return sum(inference_times(method, graphdef, state, obs_row, B=B, H=H, n=n,
                                   action_dim=level.action_dim, repeats=n_calls, warmup=1))

    start = np.asarray(schedule.start, bool)  # [B, T]
    call_steps = start.any(axis=0)  # [T]: steps where the engine's lax.cond runs the policy
    call_steps[0] &= bool(np.asarray(getattr(schedule, "reference_start", False)))  # step 0: the first chunk
    if int(call_steps.sum()) != first.policy_calls:
        raise RuntimeError(f"cadence limit: {int(call_steps.sum())} call steps in the schedule but the engine made "
                           f"{first.policy_calls} policy calls")
    _, cadence = physics_with_policy(level, method, graphdef, state, obs_row, call_steps, B=B, T=T, H=H, n=n)

    engine_times, limit_times, phys_times, cadence_times = [], [], [], []
    for _ in range(repeats):  # interleaved, so that load from other processes hits all of them alike
        engine_times.append(engine().run_s)
        phys_times.append(physics())
        limit_times.append(phys_times[-1] + bare_policy())
        cadence_times.append(cadence())
    engine_s, limit_s, phys_s, cadence_s = (min(x) for x in (engine_times, limit_times, phys_times, cadence_times))
    return LimitReport(
        method=method.label, B=B, T=T, compile_s=first.compile_s, physics_compile_s=phys_compile_s,
        engine_steps_per_s=B * T / engine_s, physics_only_steps_per_s=B * T / phys_s,
        limit_steps_per_s=B * T / limit_s, ratio=limit_s / engine_s,
        cadence_limit_steps_per_s=B * T / cadence_s, cadence_ratio=cadence_s / engine_s, policy_calls=n_calls,
        inference_ms=first.inference_ms, wasted_policy_evals=first.wasted_policy_evals, device=first.device,
        engine_times_s=tuple(engine_times),
    )
