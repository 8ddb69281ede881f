#!/usr/bin/env bash
# One call on a GPU machine measures what issue 10 asks for (bench/gpu_check.py), in about
# 3 to 5 minutes. The machine has Python 3.12 and PyTorch but not open_clip and its small
# dependencies, and nothing can be downloaded there: bring them as wheels in .whl/ (run
# bench/fetch_gpu_wheels.sh here first; .whl/ is ignored by git) and carry that folder.
#   device run: bash bench/gpu_check.sh        (with carry: [".whl"])
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__)"
report="${OUT:-/tmp}/gpu_check.md"
python3 -m bench.gpu_check "$@" | tee "$report"
echo "report: $report"
