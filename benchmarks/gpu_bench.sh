#!/usr/bin/env bash
# The unattended GPU benchmark of issue 7 (a few minutes): one STvM iteration vs one plain mean-teacher
# iteration of DeepLabV2-R101 at batch 2 with 512x512 crops, fp32 vs bf16 (and bf16 + channels_last):
# wall time, images/s, peak memory, model FLOPs utilisation against the GPU's peak, with the device named.
#   bash benchmarks/gpu_bench.sh            # writes results/bench_gpu.md (raw figures in results/raw/) and prints everything
#   QUICK=1 bash benchmarks/gpu_bench.sh    # fewer iterations
# Needs python3 with pip; installs torch only if it is missing, and sfda_nb's few runtime imports if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! $PY -c "import torch" 2>/dev/null; then
  echo "torch is missing: installing it (the default CUDA build from PyPI)"
  $PY -m pip install -q torch
fi
missing=$($PY - <<'EOF'
import importlib.util
mods = {'numpy': 'numpy', 'cv2': 'opencv-python-headless', 'PIL': 'pillow', 'fastcore': 'fastcore',
        'kornia': 'kornia', 'cityscapesscripts': 'cityscapesscripts'}
print(' '.join(pkg for mod, pkg in mods.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [ -n "$missing" ]; then echo "installing sfda_nb's runtime imports: $missing"; $PY -m pip install -q $missing; fi

$PY - <<'EOF'
import torch, platform
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, python {platform.python_version()}")
if not torch.cuda.is_available(): raise SystemExit("no CUDA device visible: this benchmark needs a GPU")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"device {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
EOF
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv 2>/dev/null || true

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY benchmarks/step_bench.py --config gpu ${QUICK:+--quick} --out results/bench_gpu.md
echo; echo "table: results/bench_gpu.md, raw figures: results/raw/bench_gpu.json"
