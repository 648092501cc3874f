"""`rtcbench publish`: a static site of a results file, checked in a real headless browser (Debian's Chromium).

The results file is written through the store API (`Store`, as the report tests do: a real DuckDB file,
no physics): three runs of one scenario across commits, whose oldest run has other comparability keys, and a
failed run of a second scenario. The site is served over loopback by python's http.server; Chromium renders
and screenshots its pages, and every href/src of the rendered DOM must resolve to a file of the site.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import numpy as np
import pytest
from store_helpers import cell_row, cli_here, rollout_columns

from rtcbench import results
from rtcbench.paired import paired_solve
from rtcbench.store import Store
from rtcbench.tables import p_value, solve_ci

SCENARIO = "publish_demo"
LEVEL = "s/h8_unicycle_balance"
B = 32
# (commit, dirty, comparability key suffix) of the three runs of SCENARIO, oldest first: the oldest measured
# its cells under other keys, so its points are not comparable with the newest run's.
COMMITS = (("1111111111aaaaaaaa", False, "old"), ("2222222222bbbbbbbb", True, "new"),
           ("3333333333cccccccc", False, "new"))
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _inferences(rng: np.random.Generator, n_rollouts: int, k_per: int) -> dict:
    """Per-inference rows: k = 0 synchronous (d = 0), then k_per asynchronous inferences per rollout."""
    rollout = np.repeat(np.arange(n_rollouts), k_per + 1)
    k = np.tile(np.arange(k_per + 1), n_rollouts)
    d = np.where(k >= 1, rng.choice([1, 2, 2, 3, 6], size=k.size), 0).astype(np.int32)
    return {"rollout": rollout, "k": k, "tau": k * 3, "d": d, "d_control": d, "dhat": np.minimum(d, 3),
            "s": np.full(k.size, 3)}


def _write_run(store: Store, scenario: str, commit: str, dirty: bool, cells: list[dict], status: str) -> str:
    """A run with its provenance, written like `rtcbench run` writes one: run row, then one cell at a time."""
    run_id = store.create_run({
        "scenario": scenario, "scenario_version": "1", "config_hash": f"cfg-{commit[:4]}",
        "comparability_key": f"key-{commit[:4]}", "n_cells_planned": 4, "git_commit": commit, "git_dirty": dirty,
        "rtcbench_version": "0.1.0", "jax_backend": "cpu", "device_kind": "cpu", "host": "test-host"})
    for spec in cells:
        row = cell_row(run_id, level=LEVEL, method=spec["method"], setup=spec["setup"], key=spec["key"],
                       solved=spec["solved"])
        row |= {"scenario": scenario, "d_p50": 2.0, "d_p95": 6.0, "d_p99": 6.0, "d_max": 6.0, "dhat_p50": 2.0,
                "dhat_p95": 3.0, "violation_rate": 0.04, "stall_frac": 0.01, "return_mean": float(spec["solved"].mean()),
                "jerk_mean_d2": float(np.mean(spec["jerk_d2"]) / 4)}
        store.write_cell(row, rollout_columns(spec["solved"], jerk_d2=spec["jerk_d2"]), spec["inferences"])
    store.finish_run(run_id, status=status, error="RuntimeError: out of memory" if status == "failed" else None,
                     wall_s=12.5, compile_s=3.0)
    return run_id


def _cells(rng: np.random.Generator, key_suffix: str, rates: dict[str, float], with_delays: bool) -> list[dict]:
    """Cells of LEVEL: naive and rtc_exp under two setups, paired by rollout (rtc_exp adds solves to naive's);
    per-inference delays only `with_delays` (runs of old schema versions have none, and each run page with
    them draws one figure more)."""
    out = []
    for setup in ("fixed2", "longtail"):
        naive = rng.random(B) < rates["naive"]
        better = naive | (rng.random(B) < rates["rtc_exp"])
        inferences = _inferences(rng, B, 6) if with_delays else None
        for method, solved in (("naive", naive), ("rtc_exp", better)):
            out.append({"method": method, "setup": setup, "key": f"{method}-{setup}-{key_suffix}", "solved": solved,
                        "jerk_d2": rng.gamma(3.0, 0.5 if method == "naive" else 0.3, B), "inferences": inferences})
    return out


@pytest.fixture(scope="module")
def site_db(tmp_path_factory) -> tuple[Path, list[str]]:
    """A results file with three runs of SCENARIO (oldest first; the newest with per-inference delays) and a
    run of another scenario that failed before any cell finished."""
    db = tmp_path_factory.mktemp("publish") / "results.duckdb"
    store = Store.open(db)
    rng = np.random.default_rng(7)
    run_ids = [_write_run(store, SCENARIO, commit, dirty,
                          _cells(rng, suffix, {"naive": 0.4 + 0.1 * i, "rtc_exp": 0.5}, i == len(COMMITS) - 1),
                          "complete") for i, (commit, dirty, suffix) in enumerate(COMMITS)]
    run_ids.append(_write_run(store, "publish_other", "4444444444dddddddd", False, [], "failed"))
    return db, run_ids


@pytest.fixture(scope="module")
def site(site_db, tmp_path_factory) -> Path:
    """The published site, with a video already rendered for the newest run of SCENARIO."""
    from PIL import Image

    db, run_ids = site_db
    videos = tmp_path_factory.mktemp("render")
    frames = [Image.new("RGB", (48, 32), color) for color in ((230, 159, 0), (0, 114, 178))]
    frames[0].save(videos / f"{run_ids[2]}_{LEVEL.replace('/', '_')}_naive_fixed2_3.gif", save_all=True,
                   append_images=frames[1:], duration=100)
    out = tmp_path_factory.mktemp("www") / "site"
    done = cli_here("publish", "--db", str(db), "--out", str(out), "--videos", str(videos))
    assert done.returncode == 0, done.stderr
    assert "site of 4 run(s) and 2 scenario(s)" in done.stdout
    return out


# -- the pages' contents, from the file -------------------------------------------------------------------


def test_index_lists_runs_newest_first_and_links_every_page(site, site_db):
    _, run_ids = site_db
    index = (site / "index.html").read_text()
    assert [index.index(r) for r in reversed(run_ids)] == sorted(index.index(r) for r in run_ids)
    for run_id in run_ids:
        assert f'href="runs/{run_id}/index.html"' in index and (site / "runs" / run_id / "index.html").is_file()
    assert "2222222222bb+dirty" in index and "failed" in index
    scenario_pages = sorted(p.name for p in (site / "scenarios").glob("*.html"))
    assert scenario_pages == ["publish_demo.html", "publish_other.html"]
    assert 'href="scenarios/publish_demo.html"' in index


def test_run_page_shows_stored_cells_paired_tests_figures_and_videos(site, site_db):
    db, run_ids = site_db
    newest = run_ids[2]
    page = (site / "runs" / newest / "index.html").read_text()
    with results.open(db) as res:
        cells = res.cells(newest)
        naive = res.rollouts(newest, cell=f"{LEVEL}/naive/longtail")
        rtc = res.rollouts(newest, cell=f"{LEVEL}/rtc_exp/longtail")
        run = res.runs().set_index("run_id").loc[newest]
    for _, cell in cells.iterrows():  # every solve rate with its Wilson interval, as stored
        assert solve_ci(cell) in page
    paired = paired_solve(naive, rtc)  # McNemar on the paired rollouts of the file
    assert f"{paired.diff:+.3f}</td><td>{p_value(paired.p_value)}</td>" in page
    for name in ("solve_rate", "jerk", "delay_survival", "violations_stalls"):
        assert f'src="{name}.png"' in page and (site / "runs" / newest / f"{name}.svg").is_file()
    assert f'src="videos/{newest}_s_h8_unicycle_balance_naive_fixed2_3.gif"' in page
    for field in ("config_hash", "comparability_key", "git_commit", "host", "wall_s"):  # provenance: every field
        assert f"<td>{field}</td>" in page
    assert run["config_hash"] in page
    failed = (site / "runs" / run_ids[3] / "index.html").read_text()
    assert "RuntimeError: out of memory" in failed and "No cell of this run has finished" in failed
    assert "<img" not in failed
    older = (site / "runs" / run_ids[1] / "index.html").read_text()  # no per-inference delays: no survival plot
    assert 'src="jerk.png"' in older and "delay_survival" not in older


def test_scenario_history_marks_runs_of_another_comparability_key(site, site_db):
    _, run_ids = site_db
    page = (site / "scenarios" / "publish_demo.html").read_text()
    rows = {run_id: page[page.index(f">{run_id}</a>"):].split("</tr>")[0] for run_id in run_ids[:3]}
    assert rows[run_ids[0]].count("not comparable") == 4  # the oldest run measured all four cells under other keys
    assert "not comparable" not in rows[run_ids[1]] and "not comparable" not in rows[run_ids[2]]
    charts = list((site / "scenarios" / "publish_demo").glob("history_*.png"))
    assert len(charts) == 1 and charts[0].stat().st_size > 5000  # one chart per level


def test_bad_input_is_a_user_error_and_an_existing_site_needs_force(site, site_db, tmp_path):
    db, run_ids = site_db
    again = cli_here("publish", "--db", str(db), "--out", str(site))
    assert again.returncode == 2 and "--out" in again.stderr and "--force" in again.stderr
    missing = cli_here("publish", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "a"))
    assert missing.returncode == 2 and "--db" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "text.duckdb").write_text("not a database\n")
    not_ours = cli_here("publish", "--db", str(tmp_path / "text.duckdb"), "--out", str(tmp_path / "b"))
    assert not_ours.returncode == 2 and "--db" in not_ours.stderr
    unknown = cli_here("publish", "--db", str(db), "--out", str(tmp_path / "c"), "--run", "nope")
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr and "--run" in unknown.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    foreign = cli_here("publish", "--db", str(db), "--out", str(tmp_path / "mine"), "--force")
    assert foreign.returncode == 2 and "publish.json" in foreign.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    # an empty folder is simply filled (here with the failed run alone: no figures to draw)
    (tmp_path / "empty").mkdir()
    filled = cli_here("publish", "--db", str(db), "--out", str(tmp_path / "empty"), "--run", run_ids[3])
    assert filled.returncode == 0, filled.stderr
    assert (tmp_path / "empty" / "runs" / run_ids[3] / "index.html").is_file()
    # --force replaces a site this command wrote, here with the newest run alone
    copy = tmp_path / "copy"
    shutil.copytree(site, copy)
    forced = cli_here("publish", "--db", str(db), "--out", str(copy), "--force", "--run", "latest")
    assert forced.returncode == 0, forced.stderr
    assert len(list((copy / "runs").iterdir())) == 1


# -- in a real browser --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary, or skip (before the site is built): the browser checks need it (.ci/run installs
    Debian's package)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return found


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium with a profile folder of its own -> the finished process (text)."""
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def served(chromium, site):
    """The site served by http.server on 127.0.0.1 and an ephemeral port -> its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest's output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _Links(HTMLParser):
    """Every href and src of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.targets += [value for name, value in attrs if name in ("href", "src") and value]


def test_every_link_of_the_rendered_pages_resolves(chromium, site, site_db, served, tmp_path):
    _, run_ids = site_db
    pages = ["index.html", f"runs/{run_ids[2]}/index.html", f"runs/{run_ids[3]}/index.html",
             "scenarios/publish_demo.html"]
    checked = 0
    for page in pages:
        dom = _browser(chromium, tmp_path / "profile", "--dump-dom", served + page).stdout
        assert "<table" in dom, page
        parser = _Links()
        parser.feed(dom)
        assert parser.targets, page
        for target in parser.targets:
            url = urlparse(urljoin(served + page, target))
            assert url.netloc == urlparse(served).netloc, f"{page} links outside the site: {target}"
            assert not re.match(r"^[a-z]+:", target), f"{page}: link not relative: {target}"
            path = site / unquote(url.path).lstrip("/")
            assert path.is_file(), f"{page}: {target} -> {path} does not exist"
            checked += 1
    assert checked > 20


def test_screenshots_of_index_and_run_page_are_not_blank(chromium, site, site_db, served, tmp_path):
    from PIL import Image

    _, run_ids = site_db
    for name, page in (("index", "index.html"), ("run", f"runs/{run_ids[2]}/index.html")):
        png = tmp_path / f"{name}.png"
        _browser(chromium, tmp_path / f"profile-{name}", f"--screenshot={png}", "--window-size=1200,900", served + page)
        with Image.open(png) as shot:
            assert shot.size == (1200, 900)
            rgb = shot.convert("RGB")
            colours = rgb.getcolors(maxcolors=1 << 20)
            assert colours is not None and len(colours) > 20, f"{name}: {len(colours or [])} colours"
            white = {colour: count for count, colour in colours}.get((255, 255, 255), 0)
            assert white < 0.97 * shot.size[0] * shot.size[1], f"{name}: almost all white"
