"""`rtcbench policy verify`: re-measure shipped checkpoints against what their sidecars record.

Run it when a policy, a level file, Kinetix or JAX changes; the test suite runs only its cheap part
(``static``) on every checkpoint and the whole command on one small one.

Per checkpoint (``NAME.msgpack`` + ``NAME.json``):

- **static** (no rollouts): the checkpoint loads against its level (sha256 of the weights equals the
  sidecar's, obs/action dims and H match the level), its folder is the level's slug, its kind is its file
  stem's (``bc``/``ttrtc``; families such as ``ablation/<level>/k4_sample`` are ``bc``), and its recorded
  d = 0 solve rate was measured on >= 512 rollouts at d = 0;
- **solve**: N fresh closed-loop rollouts at d = 0 (the recorded horizon and flow steps, a seed the record
  did not use) agree with the record: Fisher's exact test of fresh against recorded solves, failing at
  p < 0.001 (with ~20 checkpoints, a false alarm in about 2% of full verifications);
- **delay** (BC checkpoints that record ``solve_rate_naive_d4_s4``): naive chunking at d = 4, s = 4 on
  ``delay_n`` fresh rollouts solves at least 0.15 less than the recorded d = 0 rate, so a level that
  the benchmark calls delay-sensitive stays so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rtcbench.errors import UserError

FISHER_ALPHA = 0.001
DELAY_MARGIN = 0.15
MIN_RECORDED_N = 512


@dataclass
class Check:
    sidecar: str
    check: str  # static | solve | delay
    ok: bool
    detail: str


def sidecars(paths: list[Path]) -> list[Path]:
    """Every checkpoint sidecar (a .json with a .msgpack beside it) under the given files or folders."""
    found = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist", field="PATHS")
        candidates = [path] if path.is_file() else sorted(path.rglob("*.json"))
        found += [p for p in candidates if p.suffix == ".json" and p.with_suffix(".msgpack").exists()]
    if not found:
        raise UserError(f"no checkpoint (NAME.json beside NAME.msgpack) under {', '.join(map(str, paths))}",
                        field="PATHS")
    return found


def static_check(sidecar: Path):
    """-> (Check, loaded policy or None, level or None)."""
    from rtcbench.levels import level_slug, load_level
    from rtcbench.policy.checkpoint import load_policy

    meta = json.loads(sidecar.read_text())
    try:
        level = load_level(meta["level"])
        loaded = load_policy(sidecar, level=level)
    except (UserError, KeyError, ValueError) as exc:
        return Check(str(sidecar), "static", False, f"does not load: {exc}"), None, None
    problems = []
    if sidecar.parent.name != level_slug(level.name):
        problems.append(f"folder {sidecar.parent.name!r} is not the level's slug {level_slug(level.name)!r}")
    expected_kind = sidecar.stem if sidecar.stem in ("bc", "ttrtc") else "bc"
    if loaded.kind != expected_kind:
        problems.append(f"kind {loaded.kind!r}, expected {expected_kind!r} from the file name")
    recorded = meta.get("solve_rate") or {}
    if recorded.get("delay") != 0 or (recorded.get("n") or 0) < MIN_RECORDED_N:
        problems.append(f"recorded solve rate must be at d = 0 on >= {MIN_RECORDED_N} rollouts, got {recorded}")
    detail = "; ".join(problems) or f"loads (sha256 {loaded.sha256[:12]}..., dims match {level.name})"
    return Check(str(sidecar), "static", not problems, detail), loaded, level


def _fresh_rate(loaded, level, n: int, delay: int, horizon: int, flow_steps: int, seed: int) -> dict:
    from rtcbench.policy.evaluate import ChunkedEvalConfig, evaluate_flow_policy

    cfg = ChunkedEvalConfig(n=n, delay=delay, horizon=horizon, flow_steps=flow_steps)
    return evaluate_flow_policy(level, loaded.graphdef, loaded.state, loaded.config.H, cfg, seed=seed)


def solve_check(sidecar: Path, loaded, level, n: int, seed: int) -> Check:
    from scipy.stats import fisher_exact

    rec = loaded.meta["solve_rate"]
    fresh = _fresh_rate(loaded, level, n, 0, int(rec.get("horizon", 4)), int(rec.get("flow_steps", 5)), seed)
    rec_solved = int(round(rec["rate"] * rec["n"]))
    table = [[rec_solved, rec["n"] - rec_solved], [fresh["solved"], fresh["n"] - fresh["solved"]]]
    p = float(fisher_exact(table).pvalue)
    detail = (f"d=0: recorded {rec['rate']:.3f} (n={rec['n']}), fresh {fresh['rate']:.3f} (n={fresh['n']}), "
              f"Fisher p={p:.3g}")
    return Check(str(sidecar), "solve", p >= FISHER_ALPHA, detail)


def delay_check(sidecar: Path, loaded, level, n: int, seed: int) -> Check | None:
    meta = loaded.meta
    if loaded.kind != "bc" or "solve_rate_naive_d4_s4" not in meta:
        return None
    fresh = _fresh_rate(loaded, level, n, 4, 4, 5, seed + 1)
    d0 = meta["solve_rate"]["rate"]
    ok = fresh["rate"] <= d0 - DELAY_MARGIN
    detail = f"naive d=4 s=4: fresh {fresh['rate']:.3f} (n={fresh['n']}) against recorded d=0 {d0:.3f}"
    return Check(str(sidecar), "delay", ok, detail + ("" if ok else f": less than {DELAY_MARGIN} below"))


def delay_sensitive(meta: dict) -> bool:
    """A BC sidecar records naive d=4, s=4 clearly below d=0: on >= 512 rollouts, with the d=4 Wilson
    interval's top more than 0.1 below the d=0 interval's bottom."""
    d0, d4 = meta["solve_rate"], meta.get("solve_rate_naive_d4_s4")
    return d4 is not None and d4["n"] >= MIN_RECORDED_N and d4["wilson95"][1] < d0["wilson95"][0] - 0.1


def verify(paths: list[Path], *, n: int = 64, delay_n: int = 128, seed: int = 777, static_only: bool = False,
           log=print) -> list[Check]:
    """Every check of every checkpoint under `paths`, in file order; `log` gets one line per check."""
    if n < 1 or delay_n < 1:
        raise UserError(f"must be >= 1, got --n {n} --delay-n {delay_n}", field="--n")
    checks = []
    for sidecar in sidecars(paths):
        check, loaded, level = static_check(sidecar)
        found = [check]
        if check.ok and not static_only:
            found.append(solve_check(sidecar, loaded, level, n, seed))
            delay = delay_check(sidecar, loaded, level, delay_n, seed)
            if delay is not None and delay_sensitive(loaded.meta):
                found.append(delay)
        for c in found:
            log(f"{'ok  ' if c.ok else 'FAIL'} {c.check:6s} {c.sidecar}: {c.detail}")
        checks += found
    return checks
