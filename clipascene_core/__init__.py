"""CLIPascene: scene sketching at several levels of abstraction, as a library.

The front doors: `load_clip` (models/clip.py) and `sketch_matrix`, or `plan_matrix` then
`run_plan` (scene/matrix.py); imported on first use, so that importing the package stays light.
The rooms and the direction of their imports: docs/architecture.md.
"""

import os as _os

# OpenMP threads that have no work sleep instead of spinning. PyTorch's CPU kernels run on
# OpenMP, and spinning threads of two processes (a backend job and a CLI run, two tests'
# servers) steal each other's cores: measured ~15x slower each instead of ~2x (bench/
# concurrency_bench.py). It takes effect only when set before torch loads, which importing
# this package first does; a user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .version import __version__

__all__ = ["__version__", "load_clip", "plan_matrix", "run_plan", "sketch_matrix"]


def __getattr__(name: str):
    if name in ("sketch_matrix", "plan_matrix", "run_plan"):
        from .scene import matrix

        return getattr(matrix, name)
    if name == "load_clip":
        from .models.clip import load_clip

        return load_clip
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
