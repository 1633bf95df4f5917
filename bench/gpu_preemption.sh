#!/usr/bin/env bash
# Device check for issue 29 (preemption), a few minutes on one GPU:
# 1. a run trained on CUDA, stopped by SIGTERM inside an epoch, resumes on the CPU and finishes;
# 2. a run trained on the CPU resumes on CUDA (--epochs extends it) and finishes;
# 3. bench/preemption.py on the GPU: SIGTERM to exit at YOLO-n and -s, stall per mid-epoch save.
#
#   bash bench/gpu_preemption.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-$(mktemp -d)}
export PYTHONPATH=$PWD
python -m artifactkit demo-data "$WORK/chess" --n-train 64 --n-val 8 --n-heldout 4 --imgsz 128
COMMON=(--data "$WORK/chess" --store "$WORK/store" --imgsz 128 --batch 4 --workers 0 --epochs 2)

python - "$WORK" <<'PY'
import re, signal, subprocess, sys
work = sys.argv[1]
proc = subprocess.Popen([sys.executable, "-m", "artifactkit", "train", "--data", f"{work}/chess", "--store",
                         f"{work}/store", "--imgsz", "128", "--batch", "4", "--workers", "0", "--epochs", "2",
                         "--device", "cuda", "--run-id", "on-gpu"], stderr=subprocess.PIPE, text=True)
for line in proc.stderr:
    if re.search(r"batch [2-9]/", line):
        proc.send_signal(signal.SIGTERM)
        break
rest = proc.stderr.read()
print("cuda run stopped:", proc.wait(), rest.strip().splitlines()[-1])
PY
python -m artifactkit resume "$WORK/store/runs/on-gpu" --device cpu
python -m artifactkit train "${COMMON[@]}" --device cpu --epochs 1 --run-id on-cpu
python -m artifactkit resume "$WORK/store/runs/on-cpu" --device cuda --epochs 2
python bench/preemption.py --device cuda --imgsz 640 --batch 16 --n-train 160
