"""The web dashboard: a single page of plain JS modules and CSS under `static/`, served at `/ui`
(app/api/routes/ui.py). It holds no data of its own: every call goes to the /v1 API with the key
the user logs in with."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"
