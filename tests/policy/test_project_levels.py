"""The project's own levels (`rtc/<name>`, rtcbench/project_levels.py): names, files, and what makes them
worth shipping (an unstable green body that fails the episode if nobody acts)."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from rtcbench.levels import PROJECT_LEVEL_DIR, level_path, level_slug, project_level_file, project_levels
from rtcbench.project_levels import DESIGNS, write


def test_every_design_is_shipped_and_named_rtc():
    assert DESIGNS, "no project level designs"
    assert project_levels() == [f"rtc/{stem}" for stem in sorted(DESIGNS)]
    for name in project_levels():
        stem = name.removeprefix("rtc/")
        assert project_level_file(name) == PROJECT_LEVEL_DIR / f"{stem}.json"
        assert project_level_file(name + ":packed") == project_level_file(name)
        assert level_path(name) == project_level_file(name)
        assert level_slug(name + ":packed") == f"rtc_{stem}_packed"
    assert project_level_file("rtc/no_such_level") is None
    assert project_level_file("l/h4_cartpole") is None


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(DESIGNS))
def test_shipped_file_is_what_the_design_writes(stem, tmp_path):
    written = write(stem, tmp_path)
    assert json.loads(written.read_text()) == json.loads((PROJECT_LEVEL_DIR / f"{stem}.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(DESIGNS))
def test_unstable_without_control(stem):
    """With zero actions the green body leaves its balance and the episode ends as a failure (reward about
    -1) within 80 steps; under a random policy it fails too: the level needs feedback control."""
    from rtcbench.levels import load_level

    level = load_level(f"rtc/{stem}:packed")
    assert level.action_dim == 6

    def first_done(actions):  # actions [T, action_dim] -> (step of the first done, reward at that step)
        def step(carry, a):
            state, done_at, reward_at, t = carry
            _, state, reward, done, _ = level.step(jax.random.PRNGKey(0), state, a)
            first = done & (done_at < 0)
            return (state, jnp.where(first, t, done_at), jnp.where(first, reward, reward_at), t + 1), None

        _, state = level.reset(jax.random.PRNGKey(0))
        (_, done_at, reward_at, _), _ = jax.lax.scan(step, (state, -1, 0.0, 0), actions)
        return done_at, reward_at

    done_at, reward_at = jax.jit(first_done)(jnp.zeros((120, level.action_dim)))
    assert 0 < int(done_at) <= 80 and float(reward_at) < -0.9
    random_actions = jax.random.uniform(jax.random.PRNGKey(3), (120, level.action_dim), minval=-1, maxval=1)
    done_at, reward_at = jax.jit(first_done)(random_actions)
    assert 0 < int(done_at) <= 120 and float(reward_at) < -0.9


def test_unknown_design_is_refused():
    proc = subprocess.run([sys.executable, "-m", "rtcbench.project_levels", "no_such_design"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no_such_design" in proc.stderr and "Traceback" not in proc.stderr
    assert not (PROJECT_LEVEL_DIR / "no_such_design.json").exists()


def test_levels_command_lists_project_levels_after_builtins(capsys):
    from rtcbench.cli.main import main

    assert main(["levels"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed[-len(project_levels()):] == project_levels()
    assert "s/h4_thrust_aim" in listed and "rtc/cartpole_short" in listed


def test_levels_command_marks_the_levels_that_ship_policies(capsys, monkeypatch, tmp_path):
    from rtcbench.cli.main import main
    from rtcbench.shipped import POLICY_DIR

    monkeypatch.chdir(tmp_path)  # paths are shown absolute outside the checkout
    assert main(["levels"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["s/h4_thrust_aim"] == "s/h4_thrust_aim"  # no policy shipped
    assert lines["s/h8_unicycle_balance"].endswith(
        f"policy: s/h8_unicycle_balance -> {POLICY_DIR / 's_h8_unicycle_balance' / 'bc.msgpack'}")
    # packed-only policies name the packed level; the multi-expert family follows the single-expert policy
    assert lines["l/h4_cartpole"].endswith(
        f"policy: l/h4_cartpole:packed -> {POLICY_DIR / 'l_h4_cartpole_packed' / 'bc.msgpack'}, "
        f"{POLICY_DIR / 'multiexpert' / 'l_h4_cartpole_packed' / 'bc.msgpack'}")
    assert "policy: rtc/cartpole_short:packed -> " in lines["rtc/cartpole_short"]
    marked = {name for name, line in lines.items() if "policy:" in line}
    shipped = {p.parent.name for p in POLICY_DIR.glob("*/bc.msgpack")}
    assert {level_slug(name) for name in marked} | {level_slug(name + ":packed") for name in marked} >= shipped
