"""Trace files and the `trace import` / `trace show` / `schedule` / `validate` commands, through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from replay_helpers import install_real_checkpoint, scenario_dict, write_scenario

from rtcbench.cli.main import main
from rtcbench.errors import UserError
from rtcbench.replay.traces import read_trace, write_trace
from rtcbench.scenario import Scenario

LAT = [31.25, 29.0, 30.5, 35.125, 180.0, 33.0, 0.0, 66.6]


def test_write_read_roundtrip(tmp_path):
    sha = write_trace(
        tmp_path / "r.json", name="r", latencies_ms=np.array(LAT), source="unit", hardware="cpu", load="idle"
    )
    tr = read_trace(tmp_path / "r.json")
    assert tr.sha256 == sha
    np.testing.assert_array_equal(tr.latencies_ms, LAT)
    assert (tr.header.name, tr.header.version, tr.header.unit, tr.header.hardware) == ("r", 1, "ms", "cpu")
    data = json.loads((tmp_path / "r.json").read_text())  # plain JSON with the header first
    assert list(data)[:3] == ["format", "format_version", "name"]


def test_write_refuses_bad_latencies(tmp_path):
    with pytest.raises(UserError, match=r"latencies_ms\[1\]"):
        write_trace(tmp_path / "x.json", name="x", latencies_ms=[1.0, float("nan")], source="unit")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("fmt", ["csv", "csv_start_end", "json", "json_trace", "parquet"])
def test_import_formats(fmt, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    extra = []
    if fmt == "csv":
        path = src / "lat.csv"
        pd.DataFrame({"latency_ms": LAT}).to_csv(path, index=False)
    elif fmt == "csv_start_end":
        path = src / "stamps.csv"
        start = np.arange(len(LAT)) * 1.0  # seconds
        pd.DataFrame({"t0": start, "t1": start + np.array(LAT) / 1000.0, "other": 1}).to_csv(path, index=False)
        extra = ["--start", "t0", "--end", "t1", "--unit", "s"]
    elif fmt == "json":
        path = src / "lat.json"
        path.write_text(json.dumps(LAT))
    elif fmt == "json_trace":
        path = src / "other.json"
        write_trace(path, name="other", latencies_ms=LAT, source="unit")
    else:
        path = src / "lat.parquet"
        pd.DataFrame({"ms": LAT, "gpu": ["a"] * len(LAT)}).to_parquet(path)
        extra = ["--column", "ms"]
    out = tmp_path / "traces"
    rc = main(["trace", "import", str(path), "--name", "imp", "--out-dir", str(out), "--hardware", "h100", *extra])
    assert rc == 0, capsys.readouterr().err
    tr = read_trace(out / "imp.json")
    np.testing.assert_allclose(tr.latencies_ms, LAT, atol=1e-6)
    assert tr.header.hardware == "h100" and tr.header.source.startswith("imported from")
    # a second import under the same name is refused unless --force
    assert main(["trace", "import", str(path), "--name", "imp", "--out-dir", str(out), *extra]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["trace", "import", str(path), "--name", "imp", "--out-dir", str(out), "--force", *extra]) == 0


def test_import_headerless_csv_keeps_every_latency(tmp_path, capsys):
    """A CSV of bare numbers has no header: its first value is a latency, not a column name."""
    path = tmp_path / "l.csv"
    path.write_text("40\n41\n42\n")
    out = tmp_path / "traces"
    assert main(["trace", "import", str(path), "--name", "t", "--out-dir", str(out)]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(read_trace(out / "t.json").latencies_ms, [40.0, 41.0, 42.0])
    # two headerless columns are named 0 and 1
    path.write_text("1.5,40\n2.5,41\n")
    assert main(["trace", "import", str(path), "--name", "u", "--out-dir", str(out), "--column", "1"]) == 0
    np.testing.assert_array_equal(read_trace(out / "u.json").latencies_ms, [40.0, 41.0])


@pytest.mark.parametrize(("text", "blank_line"), [("ms\n40\n\n42\n", 3), ("40\n\n42\n", 2)])
def test_import_refuses_a_blank_line_inside_a_csv(text, blank_line, tmp_path, capsys):
    path = tmp_path / "l.csv"
    path.write_text(text)
    out = tmp_path / "traces"
    assert main(["trace", "import", str(path), "--name", "t", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "l.csv" in err and f"line {blank_line} is empty" in err and "Traceback" not in err
    assert not out.exists()
    # blank lines at the end of the file are not data
    path.write_text(text.replace("\n\n", "\n") + "\n\n")
    assert main(["trace", "import", str(path), "--name", "t", "--out-dir", str(out)]) == 0
    np.testing.assert_array_equal(read_trace(out / "t.json").latencies_ms, [40.0, 42.0])


def test_import_rejects_bad_name(tmp_path, capsys):
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(LAT))
    assert main(["trace", "import", str(path), "--name", "../evil", "--out-dir", str(tmp_path / "o")]) == 2
    assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_show_prints_percentiles_and_histogram(tmp_path, capsys):
    write_trace(tmp_path / "s.json", name="s", latencies_ms=LAT * 10, source="unit")
    assert main(["trace", "show", "s", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "p50" in out and "p99" in out and "max" in out
    assert "#" in out  # histogram bars
    assert "d = ceil(ms / 33.3) steps" in out
    # steps view: 0 ms -> 0, 29-33 ms -> 1, 35.125 and 66.6 ms -> 2, 180 ms -> 6
    assert "0: 12.5%" in out and "1: 50.0%" in out and "2: 25.0%" in out and "6: 12.5%" in out


def test_shipped_traces_are_valid():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "bench" / "traces"
    traces = [read_trace(p) for p in sorted(folder.glob("*.json"))]
    synthetic = [t for t in traces if t.header.source.startswith("synthetic")]
    assert len(synthetic) >= 2
    assert any("bursty" in t.header.name for t in synthetic)
    for t in synthetic:
        assert t.latencies_ms.size >= 1000
    # a recorded trace must say which hardware and load produced it
    for t in traces:
        if t not in synthetic:
            assert t.header.hardware and t.header.load and t.latencies_ms.size >= 100


def test_validate_and_schedule_commands(scenario_dir, capsys):
    install_real_checkpoint(scenario_dir)
    path = write_scenario(scenario_dir, scenario_dict())
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "config_hash" in out and "4 cells" in out
    # the cells themselves, one per line in run order (level | method | setup)
    listed = [[part.strip() for part in line.split("|")] for line in out.splitlines() if line.count("|") == 2]
    assert listed[0] == ["level", "method", "setup"]
    sc = Scenario.from_yaml(path)
    assert listed[1:] == [list(cell.key) for cell in sc.cells()] and len(listed) == 5
    assert main(["schedule", str(path), "--setup", "longtail", "--rollouts", "8", "--max-steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "│ longtail " in out and "│ trace " not in out
    assert "8 rollouts x 40 steps" in out
