#!/usr/bin/env bash
# Wheels that bench/gpu_check.sh installs on the GPU machine (Python 3.12, x86-64, no
# network there): open_clip and the small packages it needs that the machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl open_clip_torch ftfy wcwidth
ls -l .whl
