#!/usr/bin/env bash
# Rebuild a shipped multi-expert family from its recorded commands and train the replicated BC seeds that
# issue #23 asks for (three per family). Every step resumes: experts from their checkpoints, collect and
# train-bc from their work folders, so the script can be stopped and run again.
#
#   bash bench/pipelines/replicate_multiexpert.sh LEVEL POP WORK [SEEDS...]
#     LEVEL  e.g. l/h17_unicycle:packed        POP   the expert population's folder name (h17_pop)
#     WORK   where experts, data and BC work folders go (outside the checkout: they are hundreds of MB)
#     SEEDS  BC training seeds (default: 0 1 2); seed 0 must reproduce the shipped bc.msgpack's sha256
#            when the experts and data are rebuilt on the same machine and packages (checked below)
#
# The commands are the ones recorded in policies/multiexpert/<slug>/bc.json (training.bc.data.command and
# training.bc.command), with paths moved under WORK. On this 2-core CPU: about an hour for the 4 experts
# (2M steps each, vmapped), 2-3 min to collect, 3-5 min per BC seed with its 512-rollout evaluations.
# The replicated checkpoints go to policies/multiexpert/<slug>/bc_seed<k>.{msgpack,json}.
set -euo pipefail
level=$1; pop=$2; work=$3; shift 3
seeds=("${@:-0 1 2}"); seeds=(${seeds[@]})
slug=$(echo "$level" | tr '/:' '__')
RTC=${RTCBENCH:-rtcbench}
steps=${STEPS:-2000000}  # the shipped populations: 2M steps per seed (m/h9's: STEPS=786432)
shipped=policies/multiexpert/$slug
test -f "$shipped/bc.json" || { echo "no shipped family at $shipped" >&2; exit 2; }
mkdir -p "$work"

$RTC policy train-expert --level "$level" --out "$work/experts/$pop" --steps "$steps" --seeds 4 --eval-n 256 \
  --probe-lag 4 --device cpu
$RTC policy collect --expert "$work/experts/$pop" --label sample --keep all --episodes 1536 --seed 1 \
  --out "$work/data/${slug}_k4_sample" --H 8 --n-envs 256 --max-steps 256 --min-train-solve 0.65 --device cpu
for k in "${seeds[@]}"; do
  out=$shipped/bc_seed$k
  [ "$k" = 0 ] && out=$work/bc_seed0_check/bc
  $RTC policy train-bc --data "$work/data/${slug}_k4_sample" --epochs 8 --eval-delay 4 --out "$out" \
    --work "$work/bc/${slug}_seed$k" --preset cpu --batch-size 512 --lr 0.0003 --seed "$k" --eval-n 512 \
    --eval-horizon 4 --flow-steps 5 --modality-obs 128 --device cpu
done
if [[ " ${seeds[*]} " == *" 0 "* ]]; then
  python3 - "$shipped/bc.json" "$work/bc_seed0_check/bc.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["sha256"] for p in sys.argv[1:])
print(f"seed 0 rebuilt: {'identical to' if a == b else 'DIFFERENT from'} the shipped checkpoint ({b[:12]} vs {a[:12]})")
PY
fi
