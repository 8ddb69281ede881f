"""The sketches a photo remembers, and choosing among them.

Sketch Image writes on the photo the jobs it submitted for it (`data-clipascene-jobs`, newest
first) and the stroke style chosen in its dialog, so that Import Sketch… can open the
picker on them later: before any import, after the picker was closed, after Inkscape was
restarted. When a photo has several matrices (other settings, another drawn object), the
artist picks one, newest first, each described by its settings.
"""

from __future__ import annotations

import time

JOBS = "data-clipascene-jobs"
STYLE = "data-clipascene-photo-style"
CLIP = "data-clipascene-photo-clip"
SERVER = "data-clipascene-server"
#: The most jobs a photo lists (the oldest are forgotten first; the backend keeps them).
MAX_JOBS = 20


def remembered(image) -> list[str]:
    """The job ids recorded on a photo, newest first."""
    return [job for job in (image.get(JOBS) or "").split() if job]


def remember(image, job_id: str, style: str, clip: str, server: str) -> None:
    """Record a job submitted for `image` (first: the newest), the backend that runs it, and
    the dialog's stroke style (`style.StrokeStyle.encode()`) and clip option for its imports."""
    jobs = [job_id, *(job for job in remembered(image) if job != job_id)][:MAX_JOBS]
    image.set(JOBS, " ".join(jobs))
    image.set(STYLE, style)
    image.set(CLIP, clip)
    image.set(SERVER, server)


def describe(job: dict) -> str:
    """One line about a job for the chooser: when, its settings, how far it got."""
    params = job.get("params") or {}
    progress = job.get("progress") or {}
    when = time.strftime("%d %b %H:%M", time.localtime(job.get("created") or 0))
    layers = params.get("layers") or []
    settings = [f"quality {params.get('preset') or 'auto'}",
                f"fidelity {', '.join(str(layer) for layer in layers)}" if layers else "",
                f"{params['rows']} simplicity rows" if params.get("rows") is not None else "",
                f"{params['strokes']} strokes" if params.get("strokes") else "",
                "foreground and background" if params.get("split", True) else "one region",
                f"seed {params['seed']}" if params.get("seed") else ""]
    done, total = progress.get("cells_done"), progress.get("cells_total")
    status = {"queued": "queued", "running": "sketching", "done": "finished",
              "failed": "failed", "cancelled": "stopped"}.get(job.get("status"), job.get("status"))
    count = f" ({done} of {total} sketches ready)" if total else ""
    return f"{when} · " + " · ".join(item for item in settings if item) + f" — {status}{count}"


def newest_first(jobs: list[dict]) -> list[dict]:
    return sorted(jobs, key=lambda job: job.get("created") or 0, reverse=True)


CHOOSER_UI = """<interface>
  <object class="GtkDialog" id="chooser">
    <property name="modal">True</property>
    <property name="border-width">12</property>
    <child internal-child="vbox">
      <object class="GtkBox" id="jobs">
        <property name="orientation">vertical</property>
        <property name="spacing">6</property>
      </object>
    </child>
    <child type="action">
      <object class="GtkButton" id="close"><property name="label">Close</property></object>
    </child>
    <child type="action">
      <object class="GtkButton" id="open">
        <property name="label">Open</property>
        <property name="can-default">True</property>
      </object>
    </child>
    <action-widgets>
      <action-widget response="cancel">close</action-widget>
      <action-widget response="ok" default="true">open</action-widget>
    </action-widgets>
  </object>
</interface>"""


def choose_job(jobs: list[dict], title: str = "CLIPascene") -> dict | None:
    """Let the artist pick one of `jobs` (newest first) in a small modal window -> the job, or
    None when closed. One job is chosen without asking."""
    if len(jobs) == 1:
        return jobs[0]
    from .picker import Gtk

    if not Gtk.init_check()[0]:
        raise RuntimeError("The CLIPascene picker cannot open a window: no display was found.")
    # Built from a description, as picker.ui is: PyGObject refuses to construct a window
    # directly once Gtk was first imported without a display (inkex.gui windows do the same).
    builder = Gtk.Builder()
    builder.add_from_string(CHOOSER_UI)
    dialog = builder.get_object("chooser")
    dialog.set_title(title)
    box = builder.get_object("jobs")
    heading = Gtk.Label(label="This photo was sketched several times. Which matrix?")
    heading.set_xalign(0)
    box.pack_start(heading, False, False, 0)
    buttons = []
    for job in newest_first(jobs):
        button = Gtk.RadioButton.new_with_label_from_widget(buttons[0][0] if buttons else None,
                                                            describe(job))
        buttons.append((button, job))
        box.pack_start(button, False, False, 0)
    dialog.show_all()
    answer = dialog.run()
    chosen = next((job for button, job in buttons if button.get_active()), None)
    dialog.destroy()
    while Gtk.events_pending():
        Gtk.main_iteration()
    return chosen if answer == Gtk.ResponseType.OK else None
