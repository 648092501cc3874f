#!/usr/bin/env bash
# Packaging check (run by .ci/run after the tests): build a wheel of the project, install it into a fresh
# venv (not editable), and use it from a folder outside the checkout. The report SQL and the shipped
# traces must come from the wheel itself (rtcbench/shipped.py), so a missing package-data step fails here.
# Use: PYTHON=.venv/bin/python bash tests/wheel_check.sh   (~2 min: venv install from pip's cache, one
# tiny real run of 4 rollouts x 24 steps, its report, and `trace show` of a shipped trace)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" . 2>/dev/null
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q -c constraints.txt "$WORK"/dist/rtcbench-*.whl
RB="$WORK/venv/bin/rtcbench"
mkdir "$WORK/elsewhere"
cd "$WORK/elsewhere"
"$WORK/venv/bin/python" - <<PYEOF
import rtcbench, pathlib
where = pathlib.Path(rtcbench.__file__).resolve()
assert "$WORK/venv" in str(where), f"rtcbench imported from {where}, not from the wheel"
PYEOF
cat > tiny.yaml <<YAML
schema_version: 1
name: wheel_check
levels: [s/h8_unicycle_balance]
policy: $REPO/policies/{level}/bc.msgpack
methods: [{kind: naive}]
setups:
  - name: fixed2
    profile: {kind: fixed, d: 2}
    forecaster: {kind: oracle}
    horizon: {kind: fixed_clock, s: 3}
rollouts: 4
max_steps: 24
YAML
"$RB" trace show synthetic_bursty > trace.txt
grep -q "synthetic_bursty" trace.txt
"$RB" run tiny.yaml --db r.duckdb > run.txt
"$RB" report --db r.duckdb --out rep > report.txt
for f in report.md solve_rate.png jerk.png delay_survival.png delay_survival.svg violations_stalls.png; do
  test -s "rep/$f" || { echo "wheel check: report file rep/$f is missing or empty"; exit 1; }
done
grep -q "naive" rep/report.md
echo "wheel check passed: installed $(basename "$WORK"/dist/rtcbench-*.whl), ran, reported and showed a shipped trace outside the checkout"
