#!/bin/bash
# Train on a lent GPU from what scripts/gpu/prepare.py packed into .gpu/, for about T seconds.
#
# A 30-step probe first (a smoke test, and the speed), then one run whose learning rate halves
# every quarter of the steps the probe says fit, so it ends annealed. The EMA model comes back as
# $OUT/trained.npz (also every 100 s, in case the call is cut short), the raw weights as
# $OUT/trained-raw.npz, the logs beside them. Run from the repository root, e.g. through the
# device tool with carry [".gpu"]:   rm -rf /tmp/probe /tmp/run; T=530 LR=8e-4 bash scripts/gpu/run.sh
# (a machine still warm from an earlier call keeps /tmp: remove the old run folders, as above).
# Environment: T (seconds, 530), LR (peak, 8e-4), BATCH (64), CROP (128), DEV (cuda), LOCAL (set:
# constriction is installed already, as on a development machine), BF16 (set: --bf16-hidden, measured
# on CPUs only so far: compare the probe's steps/s with and without it first).
# On an H200, batches of 64 crops of 128x128 kept the GPU 35-55 % busy in 8 GB (docs/ablations.md):
# larger batches should cost little more time per step.
set -u
T=${T:-530}
OUT=${OUT:?the folder that comes back}
t0=$(date +%s)
if [ -z "${LOCAL:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# cuDNN may time its algorithms: a training run's crops all have one size.
ICNN='import sys, torch; torch.backends.cudnn.benchmark = True; sys.argv[0] = "icnn"; from icnn_codec.cli import main; main()'
COMMON="--init .gpu/init.npz $(cat .gpu/arch) --crop ${CROP:-128} --batch-size ${BATCH:-64} --device ${DEV:-cuda} \
    --eval .gpu/heldout.npz ${BF16:+--bf16-hidden}"

python3 -c "$ICNN" train .gpu/data -o /tmp/probe $COMMON --lr 1e-5 --warmup 1 --steps 30 --log-every 10 \
    --eval-every 30 --checkpoint-every 100000 2>&1 | tee "$OUT/probe.log"
rate=$(python3 -c '
import json
t = {r["step"]: r["time"] for r in map(json.loads, open("/tmp/probe/log.jsonl")) if "time" in r}
print(20 / (t[30] - t[10]))') || { echo "probe failed"; exit 1; }
left=$(( T - ($(date +%s) - t0) - 40 ))
steps=$(python3 -c "print(int($rate * ($left - 25) * 0.97))")
[ "$steps" -ge 50 ] || { echo "no time left for a run after the probe: raise T"; exit 1; }
halflife=$(( steps / 4 > 50 ? steps / 4 : 50 ))
echo "probe: $rate steps/s at batch ${BATCH:-64}; $left s left: $steps steps, learning-rate half-life $halflife"

( while sleep 100; do
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$OUT/gpu.log"
    python3 -c "$ICNN" export /tmp/run -o /tmp/partial.npz --name trained >/dev/null 2>&1 && mv /tmp/partial.npz "$OUT/trained.npz"
  done ) &
saver=$!
timeout -s TERM $left python3 -c "$ICNN" train .gpu/data -o /tmp/run $COMMON --lr ${LR:-8e-4} --warmup 50 \
    --lr-halflife $halflife --steps $steps --log-every 50 --eval-every $(( steps / 5 )) --checkpoint-every 200 2>&1 \
    | tee "$OUT/train.log" | grep -v "^step"
tail -1 "$OUT/train.log"
kill $saver
python3 -c "$ICNN" export /tmp/run -o "$OUT/trained.npz" --name trained
python3 -c "$ICNN" export /tmp/run -o "$OUT/trained-raw.npz" --name trained-raw --weights model
cp /tmp/run/log.jsonl "$OUT/log.jsonl"
echo "done in $(( $(date +%s) - t0 )) s"
