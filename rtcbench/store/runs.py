"""Reading a stored run back: which run an id names (`resolve_run_id`: an id, a unique prefix of one, or
``latest``), and what re-running it (``--resume``, `rtcbench render`) needs (`recorded_run`)."""

from __future__ import annotations

import json
from pathlib import Path

from rtcbench.errors import UserError
from rtcbench.store.db import read_only

LATEST = "latest"


def resolve_run_id(db_path: Path, text: str, field: str) -> str:
    """``latest`` (the latest run by start time, whatever its status), a run id, or a prefix only one run id of
    the file starts with -> the run id. Anything else is a UserError on `field` naming what the file has."""
    with read_only(db_path) as conn:
        return resolve_run_id_in(conn, text, str(db_path), field)


def resolve_run_id_in(conn, text: str, db_path: str, field: str) -> str:
    """`resolve_run_id` on an open (read-only) connection."""
    if text == LATEST:
        row = conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1").fetchone()
        if row is None:
            raise UserError("the file holds no runs yet", path=db_path, field=field)
        return row[0]
    if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", [text]).fetchone():
        return text
    matches = [r[0] for r in conn.execute(
        "SELECT run_id FROM runs WHERE starts_with(run_id, ?) ORDER BY started_at DESC", [text]).fetchall()]
    if text and len(matches) == 1:
        return matches[0]
    if text and len(matches) > 1:
        shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
        raise UserError(f"{text!r} is the start of {len(matches)} run ids ({shown}); give more of it",
                        path=db_path, field=field)
    recent = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 5").fetchall()]
    raise UserError(f"no run {text!r} in this file (latest: {', '.join(recent) or 'none'}; `latest` names the "
                    "newest)", path=db_path, field=field)


RECORDED_FIELDS = ("scenario_path", "n_rollouts_override", "config_hash", "cell_filter", "overrides",
                   "rollout_shards", "device_count")


def recorded_run(db_path: Path, run_id: str, field: str = "--resume") -> dict:
    """A stored run's scenario path, ``--rollouts``, config hash, ``--only`` filter, ``--set`` overrides
    (a list, or None), ``--rollout-shards`` and ``--devices`` (the batches `render` re-simulates a rollout
    in), read-only. Older files lack the later columns: read as NULL. A missing run is a UserError on `field`."""
    with read_only(db_path) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
        select = ", ".join(c if c in columns else f"NULL AS {c}" for c in RECORDED_FIELDS)
        row = conn.execute(f"SELECT {select} FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise UserError(f"no run {run_id!r} in this file", path=str(db_path), field=field)
    run = dict(zip(RECORDED_FIELDS, row, strict=True))
    run["overrides"] = json.loads(run["overrides"]) if run["overrides"] else None
    return run
