"""`rtcbench record-trace` (= `rtcbench trace record`): real latencies of the jitted inference -> a trace."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from rtcbench.cli.main import main

POLICY = Path(__file__).resolve().parents[2] / "policies" / "s_h8_unicycle_balance" / "bc.msgpack"


@pytest.mark.skipif(not POLICY.exists(), reason="shipped checkpoint not present")
def test_record_trace_writes_a_valid_trace(tmp_path, capsys):
    from rtcbench.replay.traces import read_trace

    rc = main(["trace", "record", "--method", "naive", "--policy", str(POLICY), "--name", "t1", "--calls", "6",
               "--background-load", "1", "--out-dir", str(tmp_path)])
    assert rc == 0, capsys.readouterr().err
    trace = read_trace(tmp_path / "t1.json")
    assert len(trace.latencies_ms) == 6 and (trace.latencies_ms > 0).all()
    assert "cpu" in trace.header.hardware and trace.header.load.startswith("1 busy-loop background process")
    assert "recorded" in trace.header.source
    assert not mp.active_children()  # the background load was stopped


def test_record_trace_bad_input(tmp_path, capsys):
    rc = main(["record-trace", "--method", "magic", "--policy", str(POLICY), "--name", "x", "--out-dir", str(tmp_path)])
    assert rc == 2 and "unknown method" in capsys.readouterr().err
    rc = main(["record-trace", "--method", "naive", "--policy", str(tmp_path / "nope.msgpack"), "--name", "x",
               "--out-dir", str(tmp_path)])
    assert rc == 2 and "not found" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
