#!/usr/bin/env bash
# One command for a lent GPU machine that has PyTorch with CUDA but no network:
#
#     benchmarks/gpu_check.sh WHEEL_DIR [gpu_check.py options]
#     benchmarks/gpu_check.sh --no-install [gpu_check.py options]    # segbench is already installed
#
# 1. installs segbench over the machine's torch without touching it: `pip install --no-deps` of
#    the wheels in WHEEL_DIR whose package is missing here (never torch, triton or nvidia-*),
#    then of segbench itself (editable; with PYTHONPATH as the fallback when that cannot build);
# 2. runs benchmarks/gpu_check.py: the demo suite on cuda, the clock against
#    torch.utils.benchmark, peak memory against torch.cuda.max_memory_allocated, metric time
#    against forward time, boundary metrics on device tensors against CPU tensors, harness overhead;
# 3. prints the path of the Markdown report it wrote under benchmarks/results/.
#
# Prepare WHEEL_DIR beforehand on a machine with network, for the GPU machine's Python (3.12 there):
#     pip download -d wheels --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#         "setuptools>=77.0.3,<81" numpy pandas pyarrow pydantic pyyaml typer rich pillow safetensors \
#         scipy numba matplotlib onnx onnxruntime-gpu
# (pip resolves their own dependencies; torch is not among them. onnx and onnxruntime-gpu are for the
# section that runs benchmarks/exported_speed.py on the device; without them that section reports the error.)
#
# Environment: PYTHON (default python3). --device cpu --quick as options makes a dry run on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
FIRST=${1:?usage: benchmarks/gpu_check.sh WHEEL_DIR|--no-install [gpu_check.py options]}
shift

# 0 when the distribution is missing (or, for setuptools, too old or too new to build segbench).
missing() {
    "$PYTHON" - "$1" <<'EOF'
import importlib.metadata as metadata
import sys

name = sys.argv[1]
try:
    version = metadata.version(name)
except metadata.PackageNotFoundError:
    sys.exit(0)
if name.lower() == "setuptools":
    sys.exit(0 if not 77 <= int(version.split(".")[0]) < 81 else 1)
sys.exit(1)
EOF
}

if [[ "$FIRST" != "--no-install" ]]; then
    [[ -d "$FIRST" ]] || { echo "no such wheel folder: $FIRST" >&2; exit 2; }
    wheels=()
    for wheel in "$FIRST"/*.whl; do
        [[ -e "$wheel" ]] || continue
        name=$(basename "$wheel" | cut -d- -f1)
        case "${name,,}" in torch|torchvision|torchaudio|triton|nvidia_*) continue ;; esac
        if missing "$name"; then wheels+=("$wheel"); fi
    done
    if ((${#wheels[@]})); then
        echo "installing ${#wheels[@]} missing packages from $FIRST"
        "$PYTHON" -m pip install --quiet --no-deps --no-index "${wheels[@]}"
    fi
    if ! "$PYTHON" -m pip install --quiet --no-deps --no-index --no-build-isolation -e .; then
        echo "segbench could not be installed (no setuptools>=77,<81 here?); using PYTHONPATH=$PWD" >&2
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())'
exec "$PYTHON" benchmarks/gpu_check.py "$@"
