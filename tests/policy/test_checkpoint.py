"""Checkpoint round trip and refusals (pickle, hash mismatch, dims mismatch, missing sidecar)."""

from __future__ import annotations

import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtcbench.errors import UserError
from rtcbench.hashing import file_sha256
from rtcbench.policy.checkpoint import load_policy, save_policy
from rtcbench.policy.model import make_config, make_policy


@pytest.fixture()
def saved(tmp_path):
    cfg = make_config("cpu", obs_dim=12, action_dim=3, H=8)
    model = make_policy(cfg, seed=3)
    model.set_obs_stats(jnp.arange(12.0), jnp.full(12, 2.0))
    sha = save_policy(model, tmp_path / "bc", {"level": "s/h4_thrust_aim", "kind": "bc", "training": {"seed": 3}})
    return model, tmp_path / "bc", sha


def test_round_trip_preserves_outputs_and_meta(saved):
    model, path, sha = saved
    loaded = load_policy(str(path) + ".msgpack")
    assert loaded.sha256 == sha == file_sha256(str(path) + ".msgpack")
    assert loaded.kind == "bc" and loaded.config == model.cfg
    meta = loaded.meta
    assert (meta["obs_dim"], meta["action_dim"], meta["H"], meta["preset"]) == (12, 3, 8, "cpu")
    assert meta["level"] == "s/h4_thrust_aim" and meta["training"] == {"seed": 3}
    assert meta["kinetix_version"] == "3.0.2"
    obs = jax.random.normal(jax.random.PRNGKey(0), (4, 12))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 3))
    tau = jnp.linspace(0.1, 0.9, 4)
    np.testing.assert_array_equal(model.velocity(obs, x, tau), loaded.model().velocity(obs, x, tau))
    np.testing.assert_array_equal(
        model.sample(jax.random.PRNGKey(2), obs, 5), loaded.model().sample(jax.random.PRNGKey(2), obs, 5)
    )
    # the sidecar path and the bare NAME load the same checkpoint
    assert load_policy(str(path) + ".json").sha256 == sha
    assert load_policy(path).sha256 == sha


def test_pickle_is_refused(saved, tmp_path):
    model, path, _ = saved
    weights = tmp_path / "evil.pkl"
    weights.write_bytes(pickle.dumps({"w": np.zeros(3)}))
    with pytest.raises(UserError, match="pickle") as err:
        load_policy(weights)
    assert "evil.pkl" in str(err.value)
    # a pickle disguised under the .msgpack name is recognised by its bytes
    disguised = tmp_path / "disguised.msgpack"
    disguised.write_bytes(pickle.dumps({"w": np.zeros(3)}, protocol=4))
    (tmp_path / "disguised.json").write_text((tmp_path / "bc.json").read_text())
    with pytest.raises(UserError, match="pickle") as err:
        load_policy(disguised)
    assert "disguised.msgpack" in str(err.value)


def test_hash_mismatch_is_refused(saved):
    _, path, _ = saved
    weights = path.with_name("bc.msgpack")
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(UserError, match="sha256 mismatch") as err:
        load_policy(weights)
    assert "bc.msgpack" in str(err.value)


def test_dims_mismatch_is_refused(saved):
    _, path, _ = saved
    from rtcbench.levels import load_level

    level = load_level("s/h4_thrust_aim")
    assert (level.obs_dim, level.action_dim) != (12, 3)
    with pytest.raises(UserError, match="dims do not match") as err:
        load_policy(path, level=level)
    assert "bc.msgpack" in str(err.value) and "s/h4_thrust_aim" in str(err.value)


def test_missing_sidecar_and_bad_kind(saved):
    _, path, _ = saved
    sidecar = path.with_name("bc.json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(meta | {"kind": "ppo"}))
    with pytest.raises(UserError, match="kind"):
        load_policy(path)
    sidecar.unlink()
    with pytest.raises(UserError, match="sidecar not found"):
        load_policy(path)
