"""Scenario loading, paths, cells, overrides and hashes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_helpers import LEVEL, scenario_dict, write_scenario

from rtcbench.errors import UserError
from rtcbench.levels import builtin_levels, level_slug
from rtcbench.scenario import Scenario

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "bench" / "scenarios").glob("*.yaml"))


def load(folder: Path, data: dict | None = None) -> Scenario:
    return Scenario.from_yaml(write_scenario(folder, data or scenario_dict()))


def test_loads_and_fills_defaults(scenario_dir):
    data = scenario_dict()
    for key in ("dt_ms", "H", "flow_steps", "fallback", "seeds"):
        del data[key]
    sc = load(scenario_dir, data)
    assert (sc.dt_ms, sc.H, sc.flow_steps, sc.fallback) == (33.3, 8, 5, "hold")
    assert (sc.seeds.delay, sc.seeds.env, sc.seeds.policy) == (0, 0, 0)
    assert sc.version == 1 and sc.schema_version == 1
    assert sc.base_dir == scenario_dir.resolve()


def test_policy_path_substitutes_level_slug(scenario_dir):
    sc = load(scenario_dir)
    assert level_slug("s/h4_thrust_aim") == "s_h4_thrust_aim"
    assert sc.policy_path(LEVEL) == scenario_dir.resolve() / "policies" / "s_h8_unicycle_balance" / "bc.msgpack"
    assert sc.policy_path(LEVEL).is_file()


def test_ttrtc_policy_must_exist_per_level(scenario_dir):
    data = scenario_dict()
    data["methods"].append({"kind": "ttrtc", "policy": "policies/{level}/ttrtc.msgpack"})
    with pytest.raises(UserError) as err:
        load(scenario_dir, data)
    assert err.value.field == "methods[2].policy" and "ttrtc.msgpack" in str(err.value)
    (scenario_dir / "policies" / level_slug(LEVEL) / "ttrtc.msgpack").write_bytes(b"tt")
    sc = load(scenario_dir, data)
    assert sc.method_policy_path(sc.methods[2], LEVEL).name == "ttrtc.msgpack"


def test_level_json_path_resolves_against_scenario_dir(scenario_dir):
    import kinetix  # noqa: F401  (only to find a real level JSON to copy)

    src = Path(kinetix.__file__).parent / "levels" / "s" / "h4_thrust_aim.json"
    (scenario_dir / "lv").mkdir()
    (scenario_dir / "lv" / "mine.json").write_bytes(src.read_bytes())
    data = scenario_dict()
    data["levels"] = ["lv/mine.json"]
    (scenario_dir / "policies" / "lv_mine.json").mkdir()
    (scenario_dir / "policies" / "lv_mine.json" / "bc.msgpack").write_bytes(b"p")
    sc = load(scenario_dir, data)
    assert sc.resolve_level("lv/mine.json") == str((scenario_dir / "lv" / "mine.json").resolve())
    assert "level:lv/mine.json" in sc.file_digests()


def test_packed_levels_validate_resolve_and_hash(scenario_dir):
    import kinetix  # noqa: F401  (only to find a real level JSON to copy)

    data = scenario_dict()
    data["levels"] = ["l/h17_unicycle:packed"]
    (scenario_dir / "policies" / "l_h17_unicycle_packed").mkdir()
    (scenario_dir / "policies" / "l_h17_unicycle_packed" / "bc.msgpack").write_bytes(b"p")
    sc = load(scenario_dir, data)
    assert sc.resolve_level("l/h17_unicycle:packed") == "l/h17_unicycle:packed"
    assert sc.policy_path("l/h17_unicycle:packed").parent.name == "l_h17_unicycle_packed"
    # a level JSON may be packed too: resolved to its absolute path, hashed by its file
    src = Path(kinetix.__file__).parent / "levels" / "s" / "h4_thrust_aim.json"
    (scenario_dir / "lv").mkdir()
    (scenario_dir / "lv" / "mine.json").write_bytes(src.read_bytes())
    (scenario_dir / "policies" / "lv_mine.json_packed").mkdir()
    (scenario_dir / "policies" / "lv_mine.json_packed" / "bc.msgpack").write_bytes(b"q")
    data["levels"] = ["lv/mine.json:packed"]
    sc_json = load(scenario_dir, data)
    assert sc_json.resolve_level("lv/mine.json:packed") == str((scenario_dir / "lv" / "mine.json").resolve()) + ":packed"
    assert "level:lv/mine.json:packed" in sc_json.file_digests()
    # packed and unpacked are different levels: a different config hash, never comparable
    (scenario_dir / "policies" / "l_h17_unicycle").mkdir()
    (scenario_dir / "policies" / "l_h17_unicycle" / "bc.msgpack").write_bytes(b"p")
    data["levels"] = ["l/h17_unicycle"]
    assert load(scenario_dir, data).comparability_key != sc.comparability_key
    data["levels"] = ["l/h17_unicyle:packed"]
    with pytest.raises(UserError) as err:
        load(scenario_dir, data)
    assert err.value.field == "levels[0]" and "':packed'" in str(err.value) and "l/h17_unicycle" in str(err.value)


def test_project_levels_validate_resolve_and_hash(scenario_dir):
    from rtcbench.hashing import file_sha256
    from rtcbench.levels import project_level_file

    name = "rtc/cartpole_short:packed"
    data = scenario_dict()
    data["levels"] = [name]
    (scenario_dir / "policies" / level_slug(name)).mkdir()
    (scenario_dir / "policies" / level_slug(name) / "bc.msgpack").write_bytes(b"p")
    sc = load(scenario_dir, data)
    assert sc.resolve_level(name) == name
    # the project's level file is part of the hash (it can change between commits; built-ins cannot)
    assert sc.file_digests()[f"level:{name}"] == file_sha256(project_level_file(name))
    assert not any(key.startswith("level:") for key in load(scenario_dir).file_digests())  # a built-in
    data["levels"] = ["rtc/cartpole_shrt:packed"]
    with pytest.raises(UserError) as err:
        load(scenario_dir, data)
    assert err.value.field == "levels[0]" and "rtc/cartpole_short" in str(err.value)


def test_builtin_levels_found_without_jax():
    names = builtin_levels()
    assert "s/h4_thrust_aim" in names and "s/h8_unicycle_balance" in names and len(names) > 20


def test_cells_cover_levels_methods_setups(scenario_dir):
    sc = load(scenario_dir)
    cells = list(sc.cells())
    assert len(cells) == 1 * 2 * 2
    assert {c.key for c in cells} == {
        (LEVEL, m, s) for m in ("naive", "rtc_exp") for s in ("longtail", "trace")
    }


def test_with_overrides(scenario_dir):
    sc = load(scenario_dir)
    small = sc.with_overrides(rollouts=4, max_steps=10, seeds={"delay": 9}, setups=["trace"])
    assert (small.rollouts, small.max_steps, small.seeds.delay, small.seeds.env) == (4, 10, 9, 2)
    assert [s.name for s in small.setups] == ["trace"]
    assert small.base_dir == sc.base_dir
    assert sc.rollouts == 16  # the original is unchanged
    with pytest.raises(UserError, match="rollouts"):
        sc.with_overrides(rollouts=0)
    with pytest.raises(UserError, match="no setup named"):
        sc.with_overrides(setups=["nope"])


def test_set_overrides_equal_editing_the_file(scenario_dir):
    """`rtcbench run --set`: the same validated scenario, and so the same config hash, as the edited file."""
    sets = ["rollouts=32", "setups[0].profile.p_spike=0.2", "methods[-1]={kind: rtc, schedule: hard}",
            "seeds.env=7"]
    overridden = Scenario.from_yaml(write_scenario(scenario_dir, scenario_dict()), sets=sets)
    edited = scenario_dict()
    edited["rollouts"], edited["seeds"]["env"] = 32, 7
    edited["setups"][0]["profile"]["p_spike"] = 0.2
    edited["methods"][1] = {"kind": "rtc", "schedule": "hard"}
    by_hand = load(scenario_dir, edited)
    assert overridden.canonical_json() == by_hand.canonical_json()
    assert overridden.config_hash == by_hand.config_hash != load(scenario_dir).config_hash
    assert (overridden.rollouts, overridden.setups[0].profile.p_spike, overridden.methods[1].label) == (
        32, 0.2, "rtc_hard")
    path = write_scenario(scenario_dir, scenario_dict())
    for bad, said in (
        (["setups[5].profile.p_spike=0.1"], "setups[5] is out of range: setups has 2 entries"),
        (["rollouts.x=1"], "rollouts is not a mapping"),
        (["setups[0].profile.p_spik=0.1"], "unknown key 'p_spik' (did you mean 'p_spike'?)"),
        (["rollouts=0"], "(with --set rollouts=0): field 'rollouts'"),
        (["rollouts"], "expected PATH=VALUE"),
        (["setups..x=1"], "cannot read the path"),
        (["dt_ms=[1"], "cannot read the value"),
    ):
        with pytest.raises(UserError, match=re.escape(said)):
            Scenario.from_yaml(path, sets=bad)
    assert Scenario.from_yaml(path).rollouts == 16  # the file itself is untouched


def test_schedule_from_scenario_uses_its_settings(scenario_dir):
    sc = load(scenario_dir)
    sched = sc.build_schedule(sc.setup("trace"))
    assert sched.start.shape == (16, 64) and sched.H == 8
    assert (sched.tau % 4 == 0).all()  # fixed_clock(4)
    again = sc.build_schedule(sc.setup("trace"))
    np.testing.assert_array_equal(sched.d, again.d)


# ---------------------------------------------------------------------------------------------- hashes


def test_seeds_and_rollouts_change_config_hash_not_comparability_key(scenario_dir):
    sc = load(scenario_dir)
    other = sc.with_overrides(rollouts=32, seeds={"env": 5})
    assert other.config_hash != sc.config_hash
    assert other.comparability_key == sc.comparability_key
    longer = sc.with_overrides(max_steps=65)
    assert longer.comparability_key != sc.comparability_key
    assert len(sc.config_hash) == 64 and sc.config_hash == load(scenario_dir).config_hash


def test_edited_trace_changes_both_hashes(scenario_dir):
    sc = load(scenario_dir)
    before = (sc.config_hash, sc.comparability_key)
    cell = next(c for c in sc.cells() if c.setup.name == "trace")
    other_cell = next(c for c in sc.cells() if c.setup.name == "longtail")
    cell_before = (sc.cell_config_hash(cell), sc.cell_comparability_key(cell), sc.cell_comparability_key(other_cell))
    trace = scenario_dir / "traces" / "t.json"
    trace.write_text(trace.read_text().replace("250.0", "251.0"))
    assert sc.config_hash != before[0]
    assert sc.comparability_key != before[1]
    assert sc.cell_config_hash(cell) != cell_before[0]
    assert sc.cell_comparability_key(cell) != cell_before[1]
    assert sc.cell_comparability_key(other_cell) == cell_before[2]  # that cell reads no trace


def test_edited_policy_changes_hashes(scenario_dir):
    sc = load(scenario_dir)
    cell = next(sc.cells())
    before = (sc.config_hash, sc.comparability_key, sc.cell_comparability_key(cell))
    sc.policy_path(LEVEL).write_bytes(b"checkpoint bytes v2")
    after = (sc.config_hash, sc.comparability_key, sc.cell_comparability_key(cell))
    assert all(a != b for a, b in zip(before, after, strict=True))


def test_cell_keys_pair_across_scenarios(scenario_dir):
    """A cell's comparability key ignores seeds, rollouts, the scenario name and the other cells."""
    sc = load(scenario_dir)
    data = scenario_dict()
    data["name"] = "another"
    data["rollouts"] = 99
    data["seeds"] = {"delay": 7, "env": 7, "policy": 7}
    data["methods"] = [{"kind": "rtc"}]
    other = Scenario.from_yaml(write_scenario(scenario_dir, data, "other.yaml"))
    a = next(c for c in sc.cells() if c.method.label == "rtc_exp" and c.setup.name == "longtail")
    b = next(c for c in other.cells() if c.setup.name == "longtail")
    assert sc.cell_comparability_key(a) == other.cell_comparability_key(b)
    assert sc.cell_config_hash(a) != other.cell_config_hash(b)
    keys = {sc.cell_comparability_key(c) for c in sc.cells()}
    assert len(keys) == 4
    for field, value in (("H", 6), ("flow_steps", 3), ("dt_ms", 20.0), ("fallback", "zero")):
        changed = sc.with_overrides(**{field: value})
        assert changed.cell_comparability_key(a) != sc.cell_comparability_key(a), field


# ---------------------------------------------------------------------------------------------- shipped


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenarios_validate_and_schedule(path):
    sc = Scenario.from_yaml(path, check_policies=False).with_overrides(rollouts=8, max_steps=64)
    for setup in sc.setups:
        sched = sc.build_schedule(setup)
        assert sched.stats.n_inferences > 0


def test_shipped_scenario_set():
    names = {p.stem for p in SHIPPED}
    assert {"longtail_5pct", "tailcontrolled_0p5pct", "tailcap", "fixed_sweep"} <= names
    kinds = {s.profile.kind for p in SHIPPED for s in Scenario.from_yaml(p, check_policies=False).setups}
    assert "trace" in kinds
    sweep = Scenario.from_yaml(REPO / "bench" / "scenarios" / "fixed_sweep.yaml", check_policies=False)
    assert [(s.profile.d, s.horizon.s) for s in sweep.setups] == [(d, max(d, 1)) for d in range(5)]
    for setup in sweep.setups:
        assert sweep.build_schedule(setup).stats.violation_rate == 0.0


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenarios_have_their_policies(path):
    """Fails until the policy checkpoints the scenarios name are shipped (policies/<level_slug>/)."""
    sc = Scenario.from_yaml(path)
    assert len(sc.config_hash) == 64


def test_schedule_command_imports_no_jax():
    code = (
        "import sys\n"
        "from rtcbench.cli.main import main\n"
        f"rc = main(['schedule', {str(REPO / 'bench' / 'scenarios' / 'tailcap.yaml')!r}, '--rollouts', '4'])\n"
        "assert rc == 0, rc\n"
        "print('JAX' if 'jax' in sys.modules else 'NOJAX')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "cap4" in out.stdout and "violation" in out.stdout
    assert out.stdout.strip().endswith("NOJAX")


def test_any_method_may_name_its_own_checkpoint(scenario_dir):
    from rtcbench.methods.config import NaiveMethod, RTCMethod

    data = scenario_dict()
    data["methods"].append({"kind": "naive", "name": "other.naive", "policy": "policies/{level}/other.msgpack"})
    with pytest.raises(UserError) as err:
        load(scenario_dir, data)
    assert err.value.field == "methods[2].policy" and "other.msgpack" in str(err.value)
    (scenario_dir / "policies" / level_slug(LEVEL) / "other.msgpack").write_bytes(b"other")
    sc = load(scenario_dir, data)
    assert sc.method_policy_path(sc.methods[2], LEVEL).name == "other.msgpack"
    assert sc.method_policy_path(sc.methods[0], LEVEL) is None  # the scenario's checkpoint
    # the method's own file is part of its cell's hash; a label and a path never split a compile
    assert "method:other.naive.policy:" + LEVEL in sc.file_digests()
    assert sc.methods[2].compute_key() == NaiveMethod()
    assert RTCMethod(name="a.rtc", policy="x").compute_key() == RTCMethod()
    # an unset policy stays out of the canonical JSON, so older scenarios keep their hashes
    assert "policy" not in NaiveMethod().model_dump(mode="json")
