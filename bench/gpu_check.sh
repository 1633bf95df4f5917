#!/usr/bin/env bash
# GPU check: YOLO-s, 2000 synthetic chess images at 640 px, 3 epochs, a checkpoint every epoch.
# Prints training img/s per epoch (all GPUs together: the trainer sums every rank's images) and
# peak GPU memory (torch's peak on rank 0's device, and nvidia-smi's per GPU, sampled each second).
# NPROC > 1 runs one process per GPU under torchrun (bench/gpu_check_ddp.sh sets it to every GPU).
#
#   bash bench/gpu_check.sh [WORKDIR]
#   BATCH=32 WORKERS=8 EPOCHS=3 bash bench/gpu_check.sh /scratch/ak-check
# Other knobs: NPROC (1), MODEL (s), N_TRAIN (2000), IMGSZ (640), INSTALL=0 to skip the pip install.
# --batch is the global batch (split over the GPUs): the default keeps 16 images per GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-$(mktemp -d)}
NPROC=${NPROC:-1}
BATCH=${BATCH:-$((16 * NPROC))}
WORKERS=${WORKERS:-4}
EPOCHS=${EPOCHS:-3}
MODEL=${MODEL:-s}
N_TRAIN=${N_TRAIN:-2000}
IMGSZ=${IMGSZ:-640}
RUN=gpucheck-$NPROC
if [ "$NPROC" -gt 1 ]; then
  LAUNCH=(torchrun --standalone --nproc-per-node "$NPROC" -m artifactkit)
else
  LAUNCH=(python -m artifactkit)
fi

[ "${INSTALL:-1}" = 1 ] && python -m pip install -q -e ".[train]"
python -m artifactkit demo-data "$WORK/chess" --n-train "$N_TRAIN" --n-val 200 --n-heldout 100 --imgsz "$IMGSZ"
nvidia-smi -L
nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader,nounits -l 1 > "$WORK/gpu.csv" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT

start=$(date +%s)
"${LAUNCH[@]}" train --data "$WORK/chess" --store "$WORK/store" --run-id "$RUN" --device cuda \
  --model "$MODEL" --epochs "$EPOCHS" --batch "$BATCH" --imgsz "$IMGSZ" --workers "$WORKERS" --save-period 1 --json
echo "wall: $(( $(date +%s) - start )) s for $EPOCHS epochs on $NPROC GPU(s) (global batch $BATCH)"
kill $SMI 2>/dev/null || true

python - "$WORK/store" "$RUN" <<'PY'
import sys
import artifactkit
from artifactkit.runs import read_metrics

for m in read_metrics(artifactkit.open_store(sys.argv[1]), sys.argv[2]):
    x, s = m["metrics"], m["system"]
    print(f"epoch {m['epoch']}: {x['speed/train_img_s']:.1f} train img/s, {x['time/epoch_s']:.0f} s with validation, "
          f"rank 0 torch peak {s.get('system/gpu_mem_peak_bytes', 0) / 2**30:.2f} GiB, mAP50 {x['metrics/mAP50']:.3f}")
PY
awk -F', ' '{ if ($2 + 0 > m[$1] + 0) m[$1] = $2; if ($3 + 0 > u[$1] + 0) u[$1] = $3 }
  END { for (g in m) printf "GPU %s: peak %d MiB used, peak utilisation %d%% (nvidia-smi)\n", g, m[g], u[g] }' "$WORK/gpu.csv" | sort
