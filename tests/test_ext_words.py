"""What the picker and Sketch Image say about a job (clipascene_ext.words) and what the picker
knows of it (clipascene_ext.feed.MatrixState): pure Python, no GTK, no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from clipascene_ext import words
from clipascene_ext.feed import Chosen, MatrixState

REPO = Path(__file__).resolve().parents[1]
PRESET = {"requested": "auto", "ran": "standard", "steps": {
    "fidelity": {"background": {"2": 1500, "8": 1500}, "foreground": {"2": 600, "8": 1000}},
    "row_steps": 400, "rows": 2, "seeds": [0, 1000]}}


def test_the_text_helpers_and_the_state_import_without_gtk():
    code = ("import sys; import clipascene_ext.words, clipascene_ext.feed; "
            "assert 'gi' not in sys.modules, 'GTK was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=REPO / "inkscape_ext")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("seconds, exact, rough", [
    (0.4, "0 s", "under a minute"), (59, "59 s", "under a minute"), (185, "3 min 05 s", "3 min"),
    (5400, "1 h 30 min", "1 h 30 min"), (-3, "0 s", "under a minute"), (3599, "59 min 59 s", "1 h 00 min")])
def test_durations_read_as_a_person_says_them(seconds, exact, rough):
    assert words.duration(seconds) == exact
    assert words.rough_duration(seconds) == rough


def test_a_caption_counts_the_strokes_of_the_part_shown_or_says_why_it_is_empty():
    cell = {"strokes": {"foreground": 9, "background": 12}, "draft": False}
    assert words.caption(cell, "combined", "running") == "21 strokes"
    assert words.caption(cell, "foreground", "running") == "9 strokes"
    assert words.caption({**cell, "draft": True}, "background", "running") == "draft · 12 strokes"
    assert words.caption({"strokes": {"scene": 5}}, "foreground", "done") == "ready"
    assert [words.caption(None, "combined", status) for status in ("queued", "running", "cancelled")] == [
        "waiting", "sketching…", "not sketched"]


def test_the_progress_bar_counts_steps_before_the_first_cell_and_says_the_stage():
    progress = {"stage": "fidelity", "fraction": 0.3, "eta_s": 30.0, "cells_done": 0, "cells_total": 6}
    assert words.progress_text("running", progress) == (0.3, "Sketching · 0/6 cells · ETA 30 s")
    assert words.progress_text("queued", progress) == (0.0, "Queued · 0/6 cells"), (
        "a requeued job starts over")
    assert words.progress_text("running", {**progress, "stage": "simplicity", "fraction": 0.1,
                                           "cells_done": 3})[0] == 0.5, "never behind the cells done"
    assert words.progress_text("done", {**progress, "cells_done": 6}) == (1.0, "Done · 6/6 cells")
    assert words.progress_text("failed", {"cells_done": 2, "cells_total": 6})[1] == "Failed · 2/6 cells"


def test_details_name_the_preset_its_steps_and_on_a_cpu_the_time_left_with_advice():
    job = {"status": "running", "device": "cpu", "params": {"preset": "auto"}, "preset": PRESET,
           "progress": {"steps_done": 1234, "steps_total": 27000, "eta_s": 5400.0}}
    assert words.details(job) == (
        "Preset standard, as auto chose (600–1500 steps per fidelity sketch, 400 per simplicity "
        "row, 2 seeds each) · step 1,234 of 27,000 · on the CPU\n"
        f"About 1 h 30 min more on this computer. {words.CPU_ADVICE}")
    drafted = {**job, "preset": None, "params": {"preset": "preview", **words.DRAFT}}
    assert words.details(drafted).endswith(words.CPU_ADVICE_DRAFTED), "no quick draft advice on a draft"
    assert words.details({**job, "device": "cuda:0"}).endswith("on cuda:0"), "no advice on a GPU"
    assert "more on this computer" not in words.details(job, "done")


def test_sketch_image_says_how_long_the_backend_expects_the_sketch_to_take():
    measured = {"id": "a", "status": "queued", "cached": False, "eta_s": 1630.0, "estimate": "measured"}
    assert words.submitted([measured]) == (
        "The backend expects this sketch to take about 27 min (measured on this backend). "
        "Inkscape stays usable meanwhile.")
    guessed = {**measured, "eta_s": 230.0, "estimate": "default"}
    both = words.submitted([measured, guessed])
    assert both.startswith("The backend expects these 2 sketches, one after another, to take about 31 min")
    assert "a first guess" in both, "one guess makes the sum a guess"
    assert words.submitted([{**measured, "cached": True, "status": "done"}]).startswith("Sketched before")
    assert words.submitted([{**measured, "eta_s": None}]) == "", "no estimate, nothing said"


def test_a_failed_or_cancelled_job_says_so_first():
    assert words.outcome({"status": "failed", "error": "out of memory"}) == "The sketch failed: out of memory"
    assert "no reason" in words.outcome({"status": "failed"})
    assert "finished cells can still be imported" in words.outcome({"status": "cancelled"})
    assert words.outcome({"status": "running"}) == ""


# --- MatrixState: a snapshot, then the events' payloads ------------------------------------------------

def snapshot(ready: dict[tuple[int, int], bool], split: bool = True) -> tuple[dict, dict]:
    """A job and its matrix (2 rows, layers 2 and 8) with the cells `ready` {place: draft}."""
    cells = [{"row": row, "column": column, "layer": (2, 8)[column], "ready": (row, column) in ready,
              "draft": ready.get((row, column), False), "strokes": {"scene": 3}}
             for row in range(2) for column in range(2)]
    job = {"status": "running", "progress": {"fraction": 0.2, "cells_done": 0, "cells_total": 4}}
    return job, {"rows": 2, "layers": [2, 8], "split": split, "cells": cells}


def cell_event(row: int, column: int, draft: bool, regions=("foreground", "background")) -> dict:
    return {"id": "j", "row": row, "column": column, "layer": (2, 8)[column], "draft": draft,
            "strokes": dict.fromkeys(regions, 4), "urls": {}}


def test_a_final_cell_replaces_its_draft_never_the_other_way_round():
    state = MatrixState()
    assert state.apply_snapshot(*snapshot({(0, 0): True})) == set()
    assert state.layout == (2, (2, 8)) and state.split
    assert state.apply_cell(cell_event(0, 0, draft=False)) == {(0, 0)}, "its images are fetched again"
    assert state.apply_cell(cell_event(0, 0, draft=True)) == set(), "a replayed draft is ignored"
    assert state.ready[(0, 0)]["draft"] is False
    assert state.apply_cell(cell_event(1, 1, draft=True)) == set(), "a new cell has nothing to replace"
    assert state.apply_snapshot(*snapshot({(0, 0): False, (1, 1): False})) == {(1, 1)}
    assert state.chosen(1, 1, "foreground") == Chosen(1, 1, "foreground", 8, False)


def test_progress_events_move_the_job_and_cells_say_which_regions_the_run_has():
    state = MatrixState()
    state.apply_snapshot(*snapshot({}))
    state.apply_progress({"id": "j", "status": "done", "stage": "done", "fraction": 1.0,
                          "cells_done": 4, "cells_total": 4})
    assert state.status == "done" and state.progress["cells_done"] == 4 and "id" not in state.progress
    state.apply_cell(cell_event(0, 1, draft=False, regions=("scene",)))
    assert not state.split, "no object found: the run fell back to one region"


def test_a_notice_that_comes_mid_run_reaches_the_picker_with_the_progress_event():
    """The split's fallback is said while the job runs, not only after it ends."""
    state = MatrixState()
    state.apply_snapshot(*snapshot({}))
    fallback = "No object was found: the image is sketched as one scene."
    state.apply_progress({"id": "j", "status": "running", "stage": "fidelity", "fraction": 0.1,
                          "notices": [fallback]})
    assert state.job["notices"] == [fallback] and "notices" not in state.progress
    state.apply_progress({"id": "j", "status": "running", "stage": "fidelity", "fraction": 0.2})
    assert state.job["notices"] == [fallback], "an older backend's event keeps what was said"
