#!/usr/bin/env bash
# Issue 26's GPU figures in one go, on a lent GPU machine (the device tool's `run`), from the
# repository's root there, with .whl/ carried (bench/gpu_wheels.sh fetched it here):
#
#     run(command="bash bench/gpu.sh", carry=[".whl"], timeout_s=590)
#
# Writes to $OUT (what comes back; bench/results/ where OUT is unset): gpu.txt (the machine),
# reid_gpu.md (bench/reid.py --gpu-only: torch-cuda and gpu-floor at the three sizes),
# train_cuda.md and train_cuda_compile.md (bench/train_throughput.py --sizes all --device
# cuda, without and with --compile). Each step has its own time limit, cheapest first, so
# that a slow step leaves the others' files; the whole stays under 9.5 minutes.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || { echo "no wheels: run bench/gpu_wheels.sh here first"; exit 2; }
PYTHONPATH="/tmp/site:$(printf '%s:' "$PWD"/packages/*/src)$PWD/bench"
export PYTHONPATH PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    python3 -c "import sys, torch, numpy, pytorch_lightning as pl, pydantic
print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'numpy', numpy.__version__, 'lightning', pl.__version__, 'pydantic', pydantic.VERSION)"
    nproc
} > "$out/gpu.txt" 2>&1
step() {  # seconds, file, command...
    local limit=$1 file=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$file" 2>&1
    echo "$file: rc $? in $((SECONDS - start)) s" | tee -a "$out/gpu.txt"
}
step 150 reid_gpu.md python3 bench/reid.py --gpu-only
step 150 train_cuda.md python3 bench/train_throughput.py --sizes all --device cuda
step 250 train_cuda_compile.md python3 bench/train_throughput.py --sizes all --device cuda --compile
cat "$out/gpu.txt"
