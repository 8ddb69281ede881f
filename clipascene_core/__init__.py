"""CLIPascene: scene sketching at several levels of abstraction, as a library."""

import os as _os

# OpenMP threads that have no work sleep instead of spinning. PyTorch's CPU kernels run on
# OpenMP, and spinning threads of two processes (a backend job and a CLI run, two tests'
# servers) steal each other's cores: measured ~15x slower each instead of ~2x (bench/
# concurrency_bench.py). It takes effect only when set before torch loads, which importing
# this package first does; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
