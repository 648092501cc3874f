"""Every malformed file in bad_inputs/ gives exit code 2 through the real CLI, names the field, writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtcbench.cli.main import main

BAD = Path(__file__).parent / "bad_inputs"

# file -> (extra CLI arguments, text the one-paragraph message must contain)
EXPECTED = {
    "unknown_key.yaml": ([], "field 'setups[0].profile.p_spkie'"),
    "nan_p_spike.yaml": ([], "field 'setups[0].profile.p_spike'"),
    "negative_delay.yaml": ([], "field 'setups[0].profile.d'"),
    "dt_ms_zero.yaml": ([], "field 'dt_ms'"),
    "dt_ms_inf.yaml": ([], "field 'dt_ms'"),
    "s_min_above_H.yaml": ([], "field 'setups[0].horizon.s_min'"),
    "empty_methods.yaml": ([], "field 'methods'"),
    "missing_trace.yaml": ([], "field 'setups[0].profile.path'"),
    "missing_policy.yaml": ([], "field 'policy'"),
    "yaml_syntax.yaml": ([], "YAML syntax error at line 11"),
    "empty.yaml": ([], "is empty"),
    "schema_version_2.yaml": ([], "field 'schema_version'"),
    "duplicate_setup_name.yaml": ([], "field 'setups[1].name'"),
    "unknown_profile_kind.yaml": ([], "field 'setups[0].profile': unknown kind 'gaussian'"),
    "unknown_level.yaml": ([], "field 'levels[0]'"),
    "references_bad_trace.yaml": ([], "field 'latencies_ms[2]'"),
    "duplicate_key.yaml": ([], "key 'rollouts' appears twice"),
    "probs_not_summing.yaml": ([], "field 'setups[0].profile.base'"),
    "negative_beta.yaml": ([], "field 'methods[1].beta'"),
    # booleans and strings are not numbers (pydantic's lax mode read `rollouts: true` as 1 rollout)
    "rollouts_bool.yaml": ([], "field 'rollouts'"),
    "beta_bool.yaml": ([], "field 'methods[1].beta'"),
    "seed_bool.yaml": ([], "field 'seeds.env'"),
    "delay_string.yaml": ([], "field 'setups[0].profile.d'"),
    # a seed past 32 bits overflowed after a 'failed' run row was written; 10^12 rollouts hit numpy's allocator
    "seed_too_big.yaml": ([], "field 'seeds.env'"),
    "rollouts_huge.yaml": ([], "GiB for one cell's delay schedule"),
    "drop_spikes_without_spikes.yaml": ([], "field 'setups[0].tail[0].above'"),
    "not_a_mapping.yaml": ([], "must be a YAML mapping"),
    "trace_negative.json": ([], "field 'latencies_ms[2]'"),
    "deep_nesting.yaml": ([], "nested too deeply"),  # was a RecursionError traceback, exit 1
    "trace_deep_nesting.json": ([], "nested too deeply"),
    "trace_nan.json": ([], "field 'latencies_ms'"),
    "trace_empty.json": ([], "field 'latencies_ms'"),
    "trace_format_version.json": ([], "field 'format_version'"),
    "trace_unknown_key.json": ([], "field 'unit_s'"),
    "import_negative.csv": ([], "field 'latency_ms[1]'"),
    "import_nan.csv": ([], "field 'latency_ms'"),
    "import_empty.csv": ([], "field 'latency_ms'"),
    "import_missing_end.csv": (["--start", "start", "--end", "end"], "field 'end'"),
}


def test_every_file_has_an_expectation():
    files = {p.name for p in BAD.iterdir() if p.is_file()}
    assert files == set(EXPECTED)
    assert len(files) >= 10


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input_exit_code_2_names_field(name, tmp_path, capsys):
    extra, needle = EXPECTED[name]
    path = str(BAD / name)
    out_dir = tmp_path / "traces"
    if name.endswith(".yaml"):
        argv = ["validate", path]
    elif name.endswith(".json"):
        argv = ["trace", "show", path]
    else:
        argv = ["trace", "import", path, "--name", "imported", "--out-dir", str(out_dir), *extra]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err  # one paragraph
    assert "Traceback" not in captured.err
    assert needle in err, err
    assert name in err or "trace_negative.json" in err  # names the file
    assert not out_dir.exists()  # nothing written


def test_run_refuses_a_rollouts_override_too_big_for_memory(tmp_path, capsys):
    scenario = Path(__file__).resolve().parents[2] / "bench" / "scenarios" / "longtail_5pct.yaml"
    db = tmp_path / "r.duckdb"
    rc = main(["run", str(scenario), "--rollouts", str(10**12), "--db", str(db)])
    err = capsys.readouterr().err
    assert rc == 2 and "field 'rollouts'" in err and "GiB" in err and "Traceback" not in err
    assert not db.exists()


@pytest.mark.parametrize("argv", [["schedule"], ["run", "--db", "{tmp}/r.duckdb"]])
def test_deep_nesting_is_refused_by_every_command(argv, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc = main([args[0], str(BAD / "deep_nesting.yaml"), *args[1:]])
    err = capsys.readouterr().err
    assert rc == 2 and "deep_nesting.yaml" in err and "nested too deeply" in err
    assert not (tmp_path / "r.duckdb").exists()
    rc = main(["trace", "import", str(BAD / "trace_deep_nesting.json"), "--name", "t", "--out-dir", str(tmp_path / "o")])
    assert rc == 2 and "nested too deeply" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_schedule_command_rejects_bad_scenario(capsys):
    rc = main(["schedule", str(BAD / "s_min_above_H.yaml")])
    assert rc == 2
    assert "setups[0].horizon.s_min" in capsys.readouterr().err


def test_unknown_setup_name(capsys):
    scenario = Path(__file__).resolve().parents[2] / "bench" / "scenarios" / "tailcap.yaml"
    rc = main(["schedule", str(scenario), "--setup", "nope"])
    assert rc == 2
    assert "no setup named 'nope'" in capsys.readouterr().err
