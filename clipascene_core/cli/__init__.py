"""The `clipascene` command line: `sketch`, `batch`, `models`, `inkscape`, `doctor`
(docs/architecture.md). `python -m clipascene_core.cli` runs it."""


def __getattr__(name: str):
    # `from clipascene_core.cli import main` (the console script of installs made before the
    # command moved to cli/commands.py) without importing the command line with the package.
    if name == "main":
        from .commands import main

        return main
    raise AttributeError(name)
