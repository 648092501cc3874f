"""Golden tests of the pure pieces of the multi-expert pipeline: first-episode chunks, the modality numbers
and the aligned chunk-boundary distance, on hand-built arrays whose answers are known."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rtcbench.engine.consistency import aligned_overlap_distance
from rtcbench.policy.collect import first_episode_chunks
from rtcbench.policy.modality import modality_summary, spread_and_signs


def test_first_episode_chunks_keep_modes_and_padding():
    T, B, H = 5, 2, 3
    obs = np.arange(T * B, dtype=np.float32).reshape(T, B, 1)  # obs[t, b] = 2t + b
    actions = np.arange(T * B, dtype=np.float32).reshape(T, B, 1) * 10
    done = np.zeros((T, B), bool)
    goal = np.zeros((T, B), bool)
    done[2, 0], goal[2, 0] = True, True  # env 0: first episode steps 0-2, solved
    done[3, 0] = True  # env 0's second episode: never used
    done[4, 1] = True  # env 1: steps 0-4, failed
    o, c, info = first_episode_chunks(obs, actions, done, goal, H, keep="all")
    assert o[:, 0].tolist() == [0, 2, 4, 1, 3, 5, 7, 9]
    # env 0's chunk at step 1: actions at steps 1, 2, then padded with the episode's last action (step 2)
    assert c[1, :, 0].tolist() == [20, 40, 40]
    assert info["kept"].tolist() == [True, True] and info["solved"].tolist() == [True, False]
    assert info["length"].tolist() == [3, 5]
    o, c, info = first_episode_chunks(obs, actions, done, goal, H, keep="success")
    assert o[:, 0].tolist() == [0, 2, 4] and info["kept"].tolist() == [True, False]
    done[4, 1] = False  # env 1 never ends inside the window: never kept
    _, _, info = first_episode_chunks(obs, actions, done, goal, H, keep="all")
    assert info["kept"].tolist() == [True, False] and info["length"].tolist() == [3, 5]


def test_spread_and_sign_disagreement_by_hand():
    # two observations x two chunks of one action: obs 0 samples +1 and -1, obs 1 samples 3 twice
    chunks = np.array([[[[1.0]], [[-1.0]]], [[[3.0]], [[3.0]]]])  # [N=2, M=2, H=1, A=1]
    within, between, disagree = spread_and_signs(chunks, [0])
    assert within.tolist() == [2.0, 0.0]
    assert between[0, 1] == between[1, 0] == 3.0  # chunk 0: |1 - 3| = 2, chunk 1: |-1 - 3| = 4
    assert disagree.tolist() == [1.0, 0.0]
    out = modality_summary(chunks, [0], boundary=np.array([0.5, 1.5]))
    assert out["stochasticity"]["value"] == 1.0 / 3.0
    assert out["sign_disagreement"]["value"] == 0.5 and out["boundary_disagreement"]["value"] == 1.0
    lo, hi = out["stochasticity"]["ci95"]
    assert lo <= 1.0 / 3.0 <= hi


def test_spread_uses_only_the_given_action_dims():
    rng = np.random.default_rng(0)
    chunks = rng.normal(size=(6, 4, 3, 2))
    chunks[..., 1] = 100.0  # an unused dim that never varies, far from zero
    a, b, _ = spread_and_signs(chunks, [0])
    a2, b2, _ = spread_and_signs(chunks[..., :1], [0])
    assert np.allclose(a, a2) and np.allclose(b, b2)


def test_aligned_overlap_distance_compares_the_same_control_step():
    H, s = 8, 3
    old = jnp.arange(H, dtype=jnp.float32)[None, :, None]  # [1, H, 1]: a_i = i
    new = jnp.concatenate([old[:, s:] + 0.5, jnp.zeros((1, s, 1))], axis=1)  # b_i = a_(s+i) + 0.5
    dist = np.asarray(aligned_overlap_distance(old, new, s, [0]))
    assert dist.shape == (1, H - s) and np.allclose(dist, 0.5)
    # the probe before the fix compared b_i with a_(s+i) for a chunk sampled s steps too early; a chunk that
    # repeats the old plan from its own start is s steps out of register, and the aligned distance says so
    assert np.allclose(np.asarray(aligned_overlap_distance(old, old, s, [0])), s)
