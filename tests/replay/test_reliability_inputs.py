"""Hostile inputs get a short one-paragraph error (exit code 2), never a traceback, a hang or a MemoryError:
YAML alias bombs, numbers past the float range, duplicate JSON keys, paths that are not files, exponent
notation YAML reads as text, huge --set values and mismatched --resume options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from replay_helpers import REPO_ROOT, TRACE_MS, scenario_dict, write_scenario

from rtcbench.cli.main import main
from rtcbench.errors import UserError
from rtcbench.scenario import Scenario

MEMORY_LIMIT_BYTES = 2 * 2**30


def billion_laughs(depth: int = 9) -> str:
    """A YAML flow list of nested aliases: 9**depth strings once expanded, a few hundred bytes as text."""
    names = "abcdefghijk"
    parts = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * 9) + "]" for i in range(1, depth + 1)]
    return "[" + ", ".join(parts) + "]"


def python_limited(code: str, *args: str, cwd: Path, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Python ``code`` in a fresh interpreter limited to 2 GiB of memory -> (result, seconds). A hang past
    `timeout` is reported as exit code -9."""
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT_BYTES}, {MEMORY_LIMIT_BYTES}))\n"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", limit + code, *args], capture_output=True, text=True, cwd=cwd,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(args, -9, exc.stdout or "", exc.stderr or "")
    return proc, time.monotonic() - t0


def cli_limited(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`rtcbench ARGS` through `python_limited`."""
    return python_limited("import sys; from rtcbench.cli.main import main; sys.exit(main(sys.argv[1:]))", *args,
                          cwd=cwd)


def assert_one_paragraph(code: int, err: str, *needles: str) -> None:
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and err.startswith("error: ") and "\n" not in err.strip(), err[-2000:]
    for needle in needles:
        assert needle in err, err


# ------------------------------------------------------------------------------------------ alias bombs


@pytest.mark.parametrize("where", ["file", "set"])
def test_yaml_alias_bomb_is_refused_quickly(where, scenario_dir):
    """Defect: the validation error repr()ed the expanded input (minutes, then MemoryError)."""
    data = scenario_dict()
    path = write_scenario(scenario_dir, data)
    if where == "file":
        path.write_text(path.read_text().replace("dt_ms: 33.3", f"dt_ms: {billion_laughs()}"))
        args = ["schedule", str(path)]
    else:
        args = ["run", str(path), "--db", str(scenario_dir / "r.duckdb"), "--no-compile-cache",
                "--set", f"dt_ms={billion_laughs()}"]
    proc, seconds = cli_limited(*args, cwd=scenario_dir)
    assert_one_paragraph(proc.returncode, proc.stderr, "aliases", "dt_ms")
    assert seconds < 30 and len(proc.stderr) < 1000
    assert not (scenario_dir / "r.duckdb").exists()


def test_a_value_that_contains_itself_is_refused(scenario_dir):
    path = write_scenario(scenario_dir, scenario_dict())
    path.write_text(path.read_text().replace("dt_ms: 33.3", "dt_ms: &loop [1, *loop]"))
    with pytest.raises(UserError, match="contains itself") as info:
        Scenario.from_yaml(path, check_policies=False)
    assert "dt_ms" in str(info.value)


def test_validation_error_echo_is_bounded(scenario_dir):
    """A bomb given through the Python API (`Scenario.from_dict`, no YAML) is echoed in a few dozen characters."""
    code = """
import json, sys
from rtcbench.errors import UserError
from rtcbench.scenario import Scenario
bomb = ["lol"] * 9
for _ in range(9):
    bomb = [bomb] * 9
data = json.loads(sys.argv[1])
data["setups"][0]["profile"]["p_spike"] = bomb
try:
    Scenario.from_dict(data, check_policies=False)
except UserError as exc:
    print(exc)
"""
    proc, seconds = python_limited(code, json.dumps(scenario_dict()), cwd=scenario_dir)
    assert proc.returncode == 0 and "field 'setups[0].profile.p_spike'" in proc.stdout, proc.stderr[-2000:]
    assert seconds < 30 and len(proc.stdout) < 500


def test_integer_of_thousands_of_digits_in_yaml(scenario_dir):
    path = write_scenario(scenario_dir, scenario_dict())
    path.write_text(path.read_text().replace("rollouts: 16", "rollouts: " + "9" * 5000))
    with pytest.raises(UserError, match="cannot be read") as info:
        Scenario.from_yaml(path, check_policies=False)
    assert len(str(info.value)) < 300
    with pytest.raises(UserError, match="cannot read the value of rollouts") as info:
        Scenario.from_yaml(write_scenario(scenario_dir, scenario_dict(), "ok.yaml"), check_policies=False,
                           sets=["rollouts=" + "9" * 5000])


# ------------------------------------------------------------------------------------------ traces


def _trace(latencies, **extra) -> dict:
    return {"format": "rtcbench-trace", "format_version": 1, "name": "t", "version": 1, "unit": "ms",
            "source": "unit test", "latencies_ms": latencies, **extra}


def test_latency_of_400_digits_is_an_error_everywhere(scenario_dir, capsys):
    """Defect: OverflowError traceback in trace show / import / schedule / validate."""
    big = [10.0, int("9" * 400), 30.0]
    trace = scenario_dir / "traces" / "t.json"
    trace.write_text(json.dumps(_trace(big)))
    (scenario_dir / "big.json").write_text(json.dumps(big))
    scenario = write_scenario(scenario_dir, scenario_dict())
    for argv, field in ((["trace", "show", str(trace)], "latencies_ms[1]"),
                        (["trace", "import", str(scenario_dir / "big.json"), "--name", "x", "--out-dir",
                          str(scenario_dir / "out")], "[][1]"),
                        (["schedule", str(scenario)], "setups[1].profile.path")):
        code = main(argv)
        err = capsys.readouterr().err
        assert_one_paragraph(code, err, field, "400 digits is too large")
        assert len(err) < 500
    assert not (scenario_dir / "out").exists()


def test_duplicate_json_key_in_a_trace_is_refused(scenario_dir, capsys):
    """Defect: json kept the last of two keys silently (duplicate YAML keys are refused)."""
    trace = scenario_dir / "dup.json"
    text = json.dumps(_trace(TRACE_MS))
    trace.write_text(text[:-1] + ', "source": "second"}')
    code = main(["trace", "show", str(trace)])
    assert_one_paragraph(code, capsys.readouterr().err, "dup.json", "field 'source'", "'source' appears twice")
    (scenario_dir / "dup_import.json").write_text('{"latencies_ms": [1, 2], "latencies_ms": [3]}')
    code = main(["trace", "import", str(scenario_dir / "dup_import.json"), "--name", "x", "--out-dir",
                 str(scenario_dir / "out")])
    assert_one_paragraph(code, capsys.readouterr().err, "dup_import.json", "'latencies_ms' appears twice")


# ------------------------------------------------------------------------------------------ scenarios


def _symlink_loop(folder: Path) -> Path:
    (folder / "loop_a").symlink_to(folder / "loop_b")
    (folder / "loop_b").symlink_to(folder / "loop_a")
    return folder / "loop_a"


@pytest.mark.parametrize(("kind", "needle"), [
    ("directory", "is a directory"),
    ("device", "is a character device"),
    ("loop", "is a symlink loop"),
    ("dangling", "is a symlink to .*nowhere.msgpack, which does not exist"),
])
def test_policy_path_that_is_not_a_file_says_what_it_is(kind, needle, scenario_dir):
    """Defect: a directory, /dev/zero or a symlink loop was reported as "does not exist"."""
    if kind == "directory":
        policy = scenario_dir / "policies"
    elif kind == "device":
        policy = Path("/dev/zero")
    elif kind == "loop":
        policy = _symlink_loop(scenario_dir)
    else:
        policy = scenario_dir / "dangling"
        policy.symlink_to(scenario_dir / "nowhere.msgpack")
    data = scenario_dict()
    data["policy"] = str(policy)
    with pytest.raises(UserError, match=needle) as info:
        Scenario.from_yaml(write_scenario(scenario_dir, data))
    assert info.value.field == "policy" and f"{policy} does not exist" not in str(info.value)


@pytest.mark.parametrize(("text", "fix"), [("1e308", "1.0e+308"), ("1.5e3", "1.5e+3"), ("-2E-3", "-2.0e-3")])
def test_exponent_that_yaml_reads_as_text_gets_a_hint(text, fix, scenario_dir):
    """Defect: `dt_ms: 1e308` (YAML 1.1 reads it as a string) got no hint."""
    path = write_scenario(scenario_dir, scenario_dict())
    path.write_text(path.read_text().replace("dt_ms: 33.3", f"dt_ms: {text}"))
    assert yaml.safe_load(f"x: {fix}")["x"] == float(text)  # the hint's spelling is a number in YAML
    with pytest.raises(UserError, match=f"write {fix.replace('+', '[+]')} for a number") as info:
        Scenario.from_yaml(path, check_policies=False)
    assert info.value.field == "dt_ms"


def test_huge_set_value_is_not_echoed_in_full(scenario_dir):
    """Defect: a 5000-item --set list was echoed in a 110 KB line."""
    path = write_scenario(scenario_dir, scenario_dict())
    spec = "rollouts=[" + ", ".join(str(i) for i in range(5000)) + "]"
    sets = [spec, *(f"seeds.env={i}" for i in range(100))]
    with pytest.raises(UserError) as info:
        Scenario.from_yaml(path, check_policies=False, sets=sets)
    message = str(info.value)
    assert "field 'rollouts'" in message and "96 more --set" in message and len(message) < 1500, message


def test_resume_with_another_only_says_what_the_run_was_made_with(tmp_path):
    """Defect: "was made with --only None" for a run made without --only."""
    from rtcbench.runner import RunRequest, _apply_recorded_only, _apply_recorded_sets

    req = RunRequest(tmp_path / "s.yaml", tmp_path / "r.duckdb", resume="run1", only="method=rtc")
    with pytest.raises(UserError) as info:
        _apply_recorded_only(req, {"cell_filter": None})
    message = str(info.value)
    assert "without --only" in message and "--only 'method=rtc' was given" in message and "None" not in message
    req = RunRequest(tmp_path / "s.yaml", tmp_path / "r.duckdb", resume="run1", sets=[f"x={i}" for i in range(5000)])
    with pytest.raises(UserError) as info:
        _apply_recorded_sets(req, {"overrides": ["rollouts=" + "9" * 10_000]})
    assert len(str(info.value)) < 1000


def test_study_bench_file_that_is_binary(tmp_path, capsys):
    """Defect: `study --bench` given a binary file raised UnicodeDecodeError."""
    bench = tmp_path / "bench.jsonl"
    bench.write_bytes(bytes(range(256)))
    code = main(["study", "--bench", str(bench), "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "o")])
    assert_one_paragraph(code, capsys.readouterr().err, "bench.jsonl", "field '--bench'", "not UTF-8")
    code = main(["study", "--bench", str(tmp_path), "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "o")])
    assert_one_paragraph(code, capsys.readouterr().err, "field '--bench'", "is a directory")
    assert not (tmp_path / "o").exists()
