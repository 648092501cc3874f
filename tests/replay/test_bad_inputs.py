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
    "drop_spikes_without_spikes.yaml": ([], "field 'setups[0].tail[0].above'"),
    "not_a_mapping.yaml": ([], "must be a YAML mapping"),
    "trace_negative.json": ([], "field 'latencies_ms[2]'"),
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


def test_schedule_command_rejects_bad_scenario(capsys):
    rc = main(["schedule", str(BAD / "s_min_above_H.yaml")])
    assert rc == 2
    assert "setups[0].horizon.s_min" in capsys.readouterr().err


def test_unknown_setup_name(capsys):
    scenario = Path(__file__).resolve().parents[2] / "bench" / "scenarios" / "tailcap.yaml"
    rc = main(["schedule", str(scenario), "--setup", "nope"])
    assert rc == 2
    assert "no setup named 'nope'" in capsys.readouterr().err
