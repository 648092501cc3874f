"""Wall-clock timing of one batched inference call, kept apart from compile time.

`inference_times` compiles the method's chunk function for a batch of B (cached by static key), warms it
up, then times each call with `block_until_ready`. `inference_ms` is the median of those times.
"""

from __future__ import annotations

import functools
import statistics
import time

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from rtcbench.methods.dispatch import make_method


@functools.lru_cache(maxsize=64)
def _compiled_inference(method, graphdef, weak_graphdef, n: int, B: int, H: int, obs_dim: int, action_dim: int):
    impl = make_method(method, n=n, has_weak=weak_graphdef is not None)

    def infer(pol_state, weak_state, obs, prefix, dhat, s, keys):
        policy = nnx.merge(graphdef, pol_state)
        if impl.uses_weak:
            return impl.fn(policy, obs, prefix, dhat, s, keys, weak=nnx.merge(weak_graphdef, weak_state))[0]
        return impl.fn(policy, obs, prefix, dhat, s, keys)[0]

    return jax.jit(infer)


def inference_inputs(obs_row, B: int, H: int, action_dim: int, seed: int = 0):
    """A realistic call: B copies of an observation, a random prefix, dhat = 2, s = H // 2."""
    rng = np.random.default_rng(seed)
    obs = jnp.broadcast_to(jnp.asarray(obs_row, jnp.float32), (B, obs_row.shape[-1]))
    prefix = jnp.asarray(rng.uniform(-1, 1, (B, H, action_dim)), jnp.float32)
    prefix = prefix.at[:, H - H // 2 :].set(0.0)
    dhat = jnp.full((B,), min(2, H // 2), jnp.int32)
    s = jnp.full((B,), H // 2, jnp.int32)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(seed), jnp.arange(B))
    return obs, prefix, dhat, s, keys


def inference_times(method, graphdef, pol_state, obs_row, *, B: int, H: int, n: int, action_dim: int,
                    repeats: int = 10, warmup: int = 2, weak_graphdef=None, weak_state=None) -> list[float]:
    """Seconds per batched inference call, one entry per timed repeat (after warm-up)."""
    fn = _compiled_inference(method, graphdef, weak_graphdef, n, B, H, int(obs_row.shape[-1]), action_dim)
    args = (pol_state, weak_state, *inference_inputs(obs_row, B, H, action_dim))
    for _ in range(max(warmup, 1)):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return times


def median_ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times)
