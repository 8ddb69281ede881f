"""The job store's upgrades: a database made by an earlier version gets the columns this one
reads, each old job the values it would have been given at its submission.

Each upgrade is one transaction; a database that is not a job store (its jobs table lacks
the other columns) is left as it is, and the store says so.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from clipascene_core.io.records import Layout, OutputFolder

from .facts import RunFacts, stored_facts, torch_device_type
from .params import JobParams


def upgrade(connection: sqlite3.Connection, job_columns: set[str], jobs_dir: Path) -> None:
    """Add what a store made before layouts, or before run facts, were recorded lacks.
    job_columns: the columns a job's row has in this version."""
    _add_layouts(connection, job_columns)
    _add_facts(connection, job_columns, jobs_dir)


def _columns(connection: sqlite3.Connection) -> set[str]:
    return {row["name"] for row in connection.execute("PRAGMA table_info(jobs)")}


@contextmanager
def _transaction(connection: sqlite3.Connection):
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _add_layouts(connection: sqlite3.Connection, job_columns: set[str]) -> None:
    """Each old job gets the layout its parameters had (the layout rules have not changed
    since)."""
    with _transaction(connection):
        columns = _columns(connection)
        if "layout" in columns or not job_columns - {"layout", "facts"} <= columns:
            return
        connection.execute("ALTER TABLE jobs ADD COLUMN layout TEXT")
        for row in connection.execute("SELECT id, params FROM jobs").fetchall():
            try:
                layout = Layout.of(JobParams(**json.loads(row["params"])).to_config())
            except (ValueError, TypeError):  # parameters no longer valid: it cannot run
                layout = Layout(1, (), False)
            connection.execute("UPDATE jobs SET layout=? WHERE id=?",
                               (json.dumps(layout.to_dict()), row["id"]))


def _add_facts(connection: sqlite3.Connection, job_columns: set[str], jobs_dir: Path) -> None:
    """Each old job gets its run facts: as its manifest records them when its run wrote one
    (the preset that ran, its steps, the device and the regions sketched), else resolved from
    its parameters for the device that ran it (or a CPU: a worker of another type resolves
    them again when it claims the job)."""
    with _transaction(connection):
        columns = _columns(connection)
        if "facts" in columns or not job_columns - {"facts"} <= columns:
            return
        connection.execute("ALTER TABLE jobs ADD COLUMN facts TEXT")
        for row in connection.execute("SELECT id, params, device FROM jobs").fetchall():
            facts = _recorded_facts(jobs_dir / row["id"] / "out") or stored_facts(
                json.loads(row["params"]), _device_type(row["device"]))
            connection.execute("UPDATE jobs SET facts=? WHERE id=?",
                               (json.dumps(facts.to_dict()), row["id"]))


def _recorded_facts(out_dir: Path) -> RunFacts | None:
    manifest = OutputFolder(out_dir).read_manifest()
    if manifest is None or manifest.preset is None:  # none yet, or written before schema 2
        return None
    device = str(manifest.model.device or "cpu")
    return RunFacts(manifest.preset, _device_type(device), tuple(manifest.regions))


def _device_type(device: str | None) -> str:
    """A stored device's type; "auto" or none: a CPU's (no torch is loaded to find out)."""
    return "cpu" if device in (None, "auto") else torch_device_type(device)
