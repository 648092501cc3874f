"""`rtcbench validate` loads every file a scenario names, as a run would, and names the scenario's field.

Before, `validate` printed "valid" for a truncated checkpoint, a sha256 mismatch, a missing sidecar, a
policy trained with another H, or a level JSON that is not a level; only `run` refused them.
"""

from __future__ import annotations

import json

import pytest
from replay_helpers import install_real_checkpoint, scenario_dict, write_scenario

from rtcbench.cli.main import main


def _validate(path, capsys) -> tuple[int, str]:
    rc = main(["validate", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.err.strip()


def test_a_scenario_with_real_files_validates(scenario_dir, capsys):
    install_real_checkpoint(scenario_dir)
    rc, err = _validate(write_scenario(scenario_dir, scenario_dict()), capsys)
    assert rc == 0, err


@pytest.mark.parametrize("damage", ["truncated", "edited_sidecar_sha", "no_sidecar"])
def test_damaged_scenario_checkpoint_is_refused_naming_policy(damage, scenario_dir, capsys):
    weights = install_real_checkpoint(scenario_dir)
    sidecar = weights.with_suffix(".json")
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "edited_sidecar_sha":
        meta = json.loads(sidecar.read_text())
        meta["sha256"] = "0" * 64
        sidecar.write_text(json.dumps(meta))
    else:
        sidecar.unlink()
    path = write_scenario(scenario_dir, scenario_dict())
    rc, err = _validate(path, capsys)
    assert rc == 2
    assert err.startswith(f"error: {path}: field 'policy'"), err
    assert ("sha256 mismatch" in err) if damage != "no_sidecar" else ("sidecar not found" in err)


def test_method_checkpoint_problems_name_the_method_field(scenario_dir, capsys):
    install_real_checkpoint(scenario_dir)
    bad = scenario_dir / "policies" / "bad"
    bad.mkdir()
    (bad / "bc.msgpack").write_bytes(b"not weights")
    (bad / "bc.json").write_text(json.dumps({"sha256": "1" * 64, "config": {}, "kind": "bc"}))
    data = scenario_dict()
    data["methods"][1]["policy"] = "policies/bad/bc.msgpack"
    rc, err = _validate(write_scenario(scenario_dir, data), capsys)
    assert rc == 2 and "field 'methods[1].policy'" in err and "sha256 mismatch" in err


def test_policy_trained_with_another_H_is_refused(scenario_dir, capsys):
    install_real_checkpoint(scenario_dir)
    data = scenario_dict()
    data["H"] = 6
    data["setups"][1]["horizon"]["s"] = 3
    rc, err = _validate(write_scenario(scenario_dir, data), capsys)
    assert rc == 2 and "field 'policy'" in err and "H=8" in err and "H=6" in err


def test_level_json_that_is_not_a_level_is_refused_clearly(scenario_dir, capsys):
    install_real_checkpoint(scenario_dir)
    (scenario_dir / "garbage.json").write_text(json.dumps({"hello": 1}))
    data = scenario_dict()
    data["levels"] = ["garbage.json"]
    data["policy"] = "policies/s_h8_unicycle_balance/bc.msgpack"
    rc, err = _validate(write_scenario(scenario_dir, data), capsys)
    assert rc == 2 and "field 'levels[0]'" in err
    assert "is not a Kinetix level file" in err and "'env_state'" in err
