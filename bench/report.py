"""The benchmarks' common ending: print the table, and append it to a Markdown file when
asked, under a heading saying which command wrote it and when."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path


def main(doc: str, title: str, module: str, run: Callable[..., str],
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """A benchmark's command line: its own options (`add_arguments`), passed by name to
    `run`, plus --write FILE."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    options = vars(parser.parse_args())
    path = options.pop("write")
    table = run(**options)
    print(table)
    if path:
        with path.open("a") as stream:
            stream.write(f"\n## {title}\n\nWritten by `python -m {module}` on "
                         f"{time.strftime('%Y-%m-%d')}.\n\n{table}\n")
