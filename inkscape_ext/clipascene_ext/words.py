"""One name for one thing: how the picker, the imported layer and the viewer name a cell, and
the words they use for a job (its progress, preset, estimate: pure text, unit-tested without GTK).

A column is a fidelity (its CLIP layer: a low number follows the photo's shapes, a high one
only its meaning), a row a simplicity (0: the full sketch; each row below keeps fewer
strokes). The backend's web page names them the same way.
"""

from __future__ import annotations

PART_NAMES = {"foreground": "Foreground", "background": "Background"}


def fidelity(layer: int) -> str:
    return f"Fidelity {int(layer)}"


def simplicity(row: int) -> str:
    return f"Simplicity {int(row)}"


def cell_name(layer: int, row: int, part: str = "combined", draft: bool = False) -> str:
    """E.g. "Fidelity 8 · Simplicity 1", " · Foreground" for one region alone, and " (draft)"
    for a draft (a progressive run's early cell, before its final one)."""
    name = f"{fidelity(layer)} · {simplicity(row)}"
    name += f" · {PART_NAMES[part]}" if part in PART_NAMES else ""
    return name + (" (draft)" if draft else "")


# --- what the picker and Sketch Image say about a job (pure text: no GTK, no network) ------------

#: The dialog's quick draft: far fewer steps than any preset (rough strokes, minutes on a CPU).
DRAFT = {"iterations": 150, "row_steps": 30}
FINAL = ("done", "failed", "cancelled")
#: What the viewer (a picker that cannot import: its own process, Inkscape stays free) says.
HOW_TO_IMPORT = ("To import a sketch: select the photo in Inkscape, then Extensions ▸ CLIPascene ▸ "
                 "Import Sketch (Change Abstraction)")
CPU_ADVICE = ("Fewer fidelity columns or simplicity rows, the quick draft, or a backend on a "
              "computer with a GPU make it faster.")
#: The advice for a job that already runs as few steps as the quick draft (or fewer).
CPU_ADVICE_DRAFTED = ("Fewer fidelity columns or simplicity rows, or a backend on a computer "
                      "with a GPU make it faster.")
#: The progress bar's words for the backend's stages and statuses.
STAGES = {"preprocessing": "Preparing the photo", "training": "Sketching", "fidelity": "Sketching",
          "simplicity": "Simplifying"}


def duration(seconds: float) -> str:
    """E.g. "45 s", "3 min 05 s", "1 h 30 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def rough_duration(seconds: float) -> str:
    """An estimate in words, to the minute: "under a minute", "27 min", "1 h 30 min"."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def caption(info: dict | None, part: str, status: str) -> str:
    """A cell's caption: its stroke count in `part` once ready (`info`: its matrix entry or
    `cell` event), else why it is empty."""
    if info is None:
        return {"queued": "waiting", "running": "sketching…"}.get(status, "not sketched")
    strokes = info.get("strokes") or {}
    count = sum(strokes.values()) if part == "combined" else strokes.get(part)
    text = "ready" if count is None else f"{count} strokes"
    return f"draft · {text}" if info.get("draft") else text


def progress_text(status: str, progress: dict) -> tuple[float, str]:
    """The progress bar: (fraction, text) for a job's status and progress (its JobInfo.progress
    or a `progress` event: stage, fraction, eta_s, cells_done, cells_total)."""
    done, total = int(progress.get("cells_done") or 0), int(progress.get("cells_total") or 0)
    # The backend's fraction counts training steps over all stages: finished cells alone
    # would leave the bar empty for the whole fidelity stage.
    fraction = 1.0 if status == "done" else max(
        float(progress.get("fraction") or 0.0) if status == "running" else 0.0,
        done / total if total else 0.0)
    stage = status if status in FINAL or status == "queued" else (progress.get("stage") or status)
    parts = [STAGES.get(stage, stage.capitalize()), f"{done}/{total} cells"]
    eta = progress.get("eta_s")
    if status == "running" and eta is not None:
        parts.append(f"ETA {duration(eta)}")
    return min(max(fraction, 0.0), 1.0), " · ".join(parts)


def outcome(job: dict) -> str:
    """What a failed or cancelled job's notice says first ("" for any other)."""
    if job.get("status") == "failed":
        return f"The sketch failed: {job.get('error') or 'the backend gave no reason.'}"
    if job.get("status") == "cancelled":
        return "This job was cancelled; the finished cells can still be imported."
    return ""


def preset_text(preset: dict) -> str:
    """JobInfo.preset {"requested", "ran", "steps"} in words, e.g. "Preset standard, as auto
    chose (600–1500 steps per fidelity sketch, 400 per simplicity row, 2 seeds each)"."""
    steps = preset.get("steps") or {}
    counts = sorted({int(count) for region in (steps.get("fidelity") or {}).values()
                     for count in region.values()})
    seeds = len(steps.get("seeds") or []) or 1
    described = [f"{counts[0]}{f'–{counts[-1]}' if len(counts) > 1 else ''} steps per "
                 "fidelity sketch" if counts else "",
                 f"{steps['row_steps']} per simplicity row" if steps.get("row_steps") else "",
                 f"{seeds} seeds each" if seeds > 1 else ""]
    asked = preset.get("requested")
    name = preset["ran"] + (f", as {asked} chose" if asked and asked != preset["ran"] else "")
    return f"Preset {name} (" + ", ".join(item for item in described if item) + ")"


def details(job: dict, status: str | None = None) -> str:
    """The preset and its steps (JobInfo.preset; else the job's parameters), the step count
    so far, the device, and on a CPU an estimate of the time left with advice."""
    status = status or job.get("status", "queued")
    params = job.get("params") or {}
    progress = job.get("progress") or {}
    preset = job.get("preset")
    parts = []
    if preset and preset.get("ran"):
        parts.append(preset_text(preset))
    elif params.get("preset"):
        steps = [f"{params['iterations']} steps per fidelity sketch" if params.get("iterations") else "",
                 f"{params['row_steps']} per simplicity row" if params.get("row_steps") else ""]
        steps = ", ".join(step for step in steps if step)
        parts.append(f"Preset {params['preset']}" + (f" ({steps})" if steps else ""))
    if progress.get("steps_total"):
        parts.append(f"step {int(progress.get('steps_done') or 0):,} of {int(progress['steps_total']):,}")
    device = job.get("device") or ""
    if device:
        parts.append(f"on {'the CPU' if device.startswith('cpu') else device}")
    text = " · ".join(parts)
    eta = progress.get("eta_s")
    if device.startswith("cpu") and status not in FINAL and eta is not None and eta > 60:
        drafted = 0 < int(params.get("iterations") or 0) <= DRAFT["iterations"]
        text += (f"\nAbout {duration(eta)} more on this computer. "
                 f"{CPU_ADVICE_DRAFTED if drafted else CPU_ADVICE}")
    return text


def submitted(answers: list[dict]) -> str:
    """What Sketch Image says of its submitted jobs (their Submitted answers), at the top of
    the viewer: how long the backend expects them to take (`eta_s`, "measured" by its earlier
    jobs on its device or a "default" guess), or that they were sketched before ("" when the
    backend gave no estimate)."""
    if answers and all(answer.get("cached") and answer.get("status") == "done" for answer in answers):
        return "Sketched before with these settings: every cell is ready to import."
    timed = [answer for answer in answers if answer.get("status") != "done"
             and answer.get("eta_s") is not None]
    if not timed:
        return ""
    how = ("measured on this backend" if all(answer.get("estimate") == "measured" for answer in timed)
           else "a first guess: this backend has not timed a sketch on its device yet")
    what = "this sketch" if len(answers) == 1 else f"these {len(answers)} sketches, one after another,"
    return (f"The backend expects {what} to take about {rough_duration(sum(a['eta_s'] for a in timed))} "
            f"({how}). Inkscape stays usable meanwhile.")
