"""``dsft ui``: a web dashboard over run directories (data preparation, new runs, live metrics, mask view,
compare, chat, export).

Server-rendered HTML from FastAPI with a little vanilla JavaScript; charts are drawn by a small SVG
script shipped in the package (no network access, no build step). Every path a request names is
resolved inside the runs root (:mod:`dsft.ui.paths`); runs are read only through :mod:`dsft.ui.runs`.
Training (:mod:`dsft.ui.launch`) and the CLI commands run for a user (:mod:`dsft.ui.jobs`: data prepare,
compare, export) are detached processes, so they outlive the dashboard; :mod:`dsft.ui.processes` records them
(pid and start time), tells whether they still run and stops them.
"""
