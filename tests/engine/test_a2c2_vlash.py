"""Golden tests of the a2c2 and vlash methods (rtcbench.methods.a2c2, .vlash; docs/DESIGN.md §3).

- config: both kinds parse from scenario-style dicts, label and share compiles as documented, and dispatch
  to their implementations (a2c2 = its base's chunk function plus a per-step correction and head cost);
- vlash: with a hand-built prefix, dhat and s, the conditioning vector the method passes to the policy is the
  committed action(s) (hand-computed), and the chunk it returns is the committed actions then the policy's
  chunk shifted to the forecast start;
- a2c2 in the engine: a stub base policy whose every chunk is a hand-built C and a head with hand-set weights
  whose residual is b + R[t] on one action dimension and o_now[k] - o_chunk[k] on another; every executed
  action of the compiled episode equals C[t] + residual, where t and the observations come from an
  independent host replay of the timeline and of the env (engine_helpers.EnvLoop, the same keys).
"""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from engine_helpers import B, H, T, make_schedule, run
from pydantic import TypeAdapter

from rtcbench.methods.config import A2C2Method, MethodConfig, NaiveMethod, RTCMethod, VLASHMethod
from rtcbench.methods.dispatch import make_method
from rtcbench.methods.vlash import committed_actions, cond_dim, conditioning, vlash_chunk

PARSE = TypeAdapter(MethodConfig).validate_python


def test_configs_parse_label_and_dispatch():
    m = PARSE({"kind": "a2c2", "base": {"kind": "rtc", "schedule": "exp"}, "head": "p/{level}/a2c2.msgpack"})
    assert isinstance(m, A2C2Method) and m.base == RTCMethod() and m.policy == "p/{level}/a2c2.msgpack"
    assert m.label == "a2c2_rtc_exp" and PARSE({"kind": "a2c2", "head": "h"}).label == "a2c2_naive"
    assert PARSE({"kind": "a2c2", "policy": "h"}).policy == "h"  # `policy` is accepted for `head`
    # label and checkpoint never split a compile; the base's settings do
    other = PARSE({"kind": "a2c2", "base": {"kind": "rtc"}, "head": "other.msgpack", "name": "mine"})
    assert other.compute_key() == m.compute_key() and hash(other.compute_key()) == hash(m.compute_key())
    assert PARSE({"kind": "a2c2", "base": {"kind": "rtc", "schedule": "hard"}, "head": "h"}).compute_key() != m.compute_key()
    for bad in ({"kind": "a2c2", "base": {"kind": "te"}, "head": "h"},  # te / sync / a2c2 are no chunk bases
                {"kind": "a2c2", "base": {"kind": "naive", "policy": "x"}, "head": "h"},
                {"kind": "a2c2", "base": {"kind": "bid", "weak_policy": "w"}, "head": "h"},
                {"kind": "a2c2", "base": {"kind": "naive"}},  # the head is required
                {"kind": "vlash"}):  # so is vlash's checkpoint
        with pytest.raises(ValueError):
            PARSE(bad)
    assert PARSE({"kind": "a2c2", "base": {"kind": "ttrtc"}, "head": "h"}).label == "a2c2_ttrtc"
    v = PARSE({"kind": "vlash", "policy": "p/{level}/vlash.msgpack"})
    assert isinstance(v, VLASHMethod) and v.label == "vlash"

    impl, base = make_method(m, n=5), make_method(RTCMethod(), n=5)
    assert impl.corrects and not base.corrects and impl.kind == "a2c2"
    assert impl.fn.func is base.fn.func and impl.fn.keywords == base.fn.keywords  # the base's chunks, unchanged
    assert (impl.cost.nfe, impl.cost.vjp, impl.cost.head_evals) == (5, 5, 1) and base.cost.head_evals == 0
    assert make_method(v, n=5).fn.func is vlash_chunk and make_method(v, n=5).cost == (5, 0, 0)


def _prefix() -> tuple[jax.Array, jax.Array, jax.Array]:
    """Two rollouts, H = 8, A = 2: prefix_i = (10 i + 1, 10 i + 2) on the real positions i < H - s."""
    A = jnp.stack([10.0 * jnp.arange(H) + 1, 10.0 * jnp.arange(H) + 2], -1)  # [H, 2]
    s = jnp.array([3, 6])
    real = jnp.arange(H)[None, :] < (H - s)[:, None]
    return jnp.where(real[..., None], A[None], 0.0), jnp.array([2, 4]), s


def test_vlash_conditioning_is_the_committed_actions():
    prefix, dhat, s = _prefix()
    # rollout 0: s = 3, dhat = 2 -> committed (1, 2), (11, 12): last (11, 12), difference (10, 10), offset 2/8
    # rollout 1: s = 6 (2 real actions), dhat = 4 -> (1, 2), (11, 12), then (11, 12) held twice:
    #            last (11, 12), difference 0, offset 4/8
    expected = np.array([[11, 12, 10, 10, 0.25], [11, 12, 0, 0, 0.5]], np.float32)
    np.testing.assert_array_equal(conditioning(prefix, dhat, s), expected)
    assert cond_dim(2) == expected.shape[1]
    np.testing.assert_array_equal(committed_actions(prefix, dhat, s)[1, :, 0], [1, 11, 11, 11, 0, 0, 0, 0])
    # no committed action (dhat = 0): zeros, the offset-0 conditioning a vlash policy gets with cond=None
    np.testing.assert_array_equal(conditioning(prefix, jnp.array([0, 1]), s),
                                  [[0, 0, 0, 0, 0], [1, 2, 0, 0, 0.125]])


class _RecordingPolicy:
    """velocity drives the Euler sample to the chunk C exactly and records the conditioning it was given."""

    def __init__(self, C):
        self.C, self.conds = C, []

    def velocity(self, obs, x, tau, cond=None):
        self.conds.append(cond)
        return (self.C - x) / (1.0 - tau)[:, None, None]


def test_vlash_chunk_passes_the_conditioning_and_starts_at_dhat():
    prefix, dhat, s = _prefix()
    C = 100.0 + jnp.arange(H * 2, dtype=jnp.float32).reshape(1, H, 2)
    pol = _RecordingPolicy(jnp.repeat(C, 2, axis=0))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    chunk, cost = vlash_chunk(pol, jnp.zeros((2, 3)), prefix, dhat, s, keys, n=4)
    assert len(pol.conds) == 4 and cost == (4, 0, 0)
    for cond in pol.conds:
        np.testing.assert_array_equal(cond, conditioning(prefix, dhat, s))
    chunk = np.asarray(chunk)
    for b in range(2):
        d = int(dhat[b])
        np.testing.assert_array_equal(chunk[b, :d], committed_actions(prefix, dhat, s)[b, :d])
        np.testing.assert_allclose(chunk[b, d:], C[0, : H - d], atol=1e-4)  # C_0 runs at tau_k + dhat


# ------------------------------------------------------------------------------------------ a2c2 engine

K_OBS = 0  # the observation dimension whose change since the chunk's observation the golden head passes through
R = np.linspace(-0.4, 0.3, H).astype(np.float32)  # residual on action dim 0 by chunk index
BIAS = np.array([0.05, -0.02, 0.0, 0.0, 0.0, 0.01], np.float32)


class _ChunkStub(nnx.Module):
    """A base policy whose every sample is the hand-built chunk C (whatever the observation and noise)."""

    def __init__(self, cfg, C):
        self.cfg = cfg
        self.C = nnx.Variable(jnp.asarray(C))

    def velocity(self, obs, x, tau, cond=None):
        tau = jnp.broadcast_to(jnp.asarray(tau, jnp.float32).reshape(x.shape[0], -1), x.shape[:2])
        return (self.C.value[None] - x) / (1.0 - tau)[..., None]

    def normalize_obs(self, obs):
        return obs


def _golden_head(Od: int, A: int):
    """Hidden units 0..H-1 carry 10 * onehot(t), unit H carries o_now[K] - o_chunk[K] + 100 (gelu(y) = y
    exactly in float32 for y >= 10 and gelu(0) = 0): residual = BIAS + (R[t], o_now[K] - o_chunk[K], 0, ...)."""
    from rtcbench.policy.a2c2 import HeadConfig, make_head

    head = make_head(HeadConfig(Od, A, H, hidden=H + 1, layers=2))
    F = 2 * Od + A + H
    k1, b1 = np.zeros((F, H + 1), np.float32), np.zeros(H + 1, np.float32)
    k1[2 * Od + A + np.arange(H), np.arange(H)] = 10.0
    k1[K_OBS, H], k1[Od + K_OBS, H], b1[H] = 1.0, -1.0, 100.0
    ko, bo = np.zeros((H + 1, A), np.float32), BIAS.copy()
    ko[np.arange(H), 0] = R / 10.0
    ko[H, 1], bo[1] = 1.0, BIAS[1] - 100.0
    for layer, (k, b) in zip([*head.hidden, head.out], [(k1, b1), (np.eye(H + 1, dtype=np.float32),
                                                                  np.zeros(H + 1, np.float32)), (ko, bo)], strict=True):
        layer.kernel.value, layer.bias.value = jnp.asarray(k), jnp.asarray(b)
    return head


def _timeline(sched, T_: int) -> tuple[np.ndarray, np.ndarray]:
    """Host replay of the timeline contract: (index t [B, T] of the executed chunk action, step tau [B, T] whose
    observation that chunk was computed from). Step 0 is the synchronous first chunk."""
    start, sd, arrive = (np.asarray(getattr(sched, k)) for k in ("start", "start_d", "arrive"))
    t_out, src_out = np.zeros((B, T_), int), np.zeros((B, T_), int)
    for b in range(B):
        t, src, pend = 0, 0, None
        for j in range(T_):
            if arrive[b, j]:
                t, src = pend
            if start[b, j] and j > 0:
                if sd[b, j] == 0:
                    t, src = 0, j
                else:
                    pend = (int(sd[b, j]), j)
            t_out[b, j], src_out[b, j] = t, src
            t += 1
    return t_out, src_out


@pytest.mark.slow
def test_a2c2_executes_base_plus_residual_at_every_step(level, env_loop):
    from rtcbench.policy.a2c2 import A2C2Policy
    from rtcbench.policy.model import make_config

    Od, A = level.obs_dim, level.action_dim
    C = (0.1 * np.arange(H * A, dtype=np.float32).reshape(H, A) - 1.0) / 3.0  # the hand-built chunk
    policy = A2C2Policy(_ChunkStub(make_config("cpu", Od, A, H), C), _golden_head(Od, A))
    rng = np.random.default_rng(3)
    d = rng.choice([0, 1, 2, 3, 9], size=(B, T), p=[0.2, 0.3, 0.3, 0.15, 0.05])  # stalls included (d = 9 > H - s)
    sched = make_schedule(d, s_min=3)
    out = run(level, policy, A2C2Method(policy="unused.msgpack"), sched)
    acts = out.extra["actions"]  # [B, T, A] commanded actions

    # the env's observations under exactly these actions (same keys as the engine)
    obs, state = env_loop.reset()
    seen = [np.asarray(obs)]
    for j in range(T - 1):
        obs, state = env_loop.step(j, state, jnp.asarray(acts[:, j]))
        seen.append(np.asarray(obs))
    seen = np.stack(seen, 1)  # [B, T, Od]: the observation of each step
    t, src = _timeline(sched, T)
    stall = t >= H
    assert stall.any() and (~stall).any()
    rows = np.arange(B)[:, None]
    expected = C[np.clip(t, 0, H - 1)] + BIAS  # [B, T, A]
    expected[..., 0] += R[np.clip(t, 0, H - 1)]
    expected[..., 1] += seen[rows, np.arange(T)[None], K_OBS] - seen[rows, src, K_OBS]
    np.testing.assert_allclose(acts[~stall], expected[~stall], atol=2e-4)
    # a stall executes the hold fallback uncorrected: the previous executed action
    prev = np.concatenate([np.zeros((B, 1, A), np.float32), acts[:, :-1]], 1)
    np.testing.assert_array_equal(acts[stall], prev[stall])
    # cost: one head evaluation per first-episode step that executed a chunk action
    length = out.per_rollout["length"]
    first = np.arange(T)[None] < length[:, None]
    np.testing.assert_array_equal(out.extra["head_evals"], (first & ~stall).sum(1))
    assert out.head_evals_per_env_step == pytest.approx((first & ~stall).sum() / length.sum())
    assert out.head_flops_per_eval and out.policy_flops_per_nfe  # XLA's counts, for the cost record
    assert (out.per_rollout["nfe"] == out.per_rollout["n_inferences"] * out.nfe_per_inference).all()


def test_a2c2_and_vlash_refuse_the_wrong_policy(level, policy):
    from rtcbench.errors import UserError

    sched = make_schedule(np.full((B, T), 1))
    with pytest.raises(UserError, match="a2c2 checkpoint"):
        run(level, policy, A2C2Method(policy="x"), sched)
    with pytest.raises(UserError, match="committed-action conditioning"):
        run(level, policy, VLASHMethod(policy="x"), sched)
    assert not make_method(NaiveMethod(), n=5).corrects
