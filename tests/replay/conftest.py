"""Fixtures of the replay tests: a folder with the files a valid scenario references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from replay_helpers import LEVEL, TRACE_MS


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    """A folder with a (placeholder-bytes) policy checkpoint for LEVEL and a small trace."""
    policy = tmp_path / "policies" / LEVEL.replace("/", "_") / "bc.msgpack"
    policy.parent.mkdir(parents=True)
    policy.write_bytes(b"checkpoint bytes v1")
    trace = {
        "format": "rtcbench-trace",
        "format_version": 1,
        "name": "t",
        "version": 1,
        "unit": "ms",
        "source": "unit test",
        "description": "",
        "latencies_ms": TRACE_MS,
    }
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "t.json").write_text(json.dumps(trace))
    return tmp_path
