"""``dsft ui``: a web dashboard over run directories (runs, live metrics, mask view, chat, new runs).

Server-rendered HTML from FastAPI with a little vanilla JavaScript; charts are drawn by a small SVG
script shipped in the package (no network access, no build step). Every path a request names is
resolved inside the runs root (:mod:`dsft.ui.paths`); runs are read only through :mod:`dsft.ui.runs`.
"""
