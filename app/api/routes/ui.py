"""The dashboard's shell at `/ui` and its static files at `/ui/static/...`.

The shell needs no key: it shows nothing until the user logs in, and every data call it makes goes
to the /v1 API with `Authorization: Bearer <key>`. None of this is part of the API's schema.
"""

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from app.ui import INDEX_HTML, STATIC_DIR

router = APIRouter(include_in_schema=False)

# Only this origin's scripts, styles and API: the dashboard loads nothing from elsewhere (Chart.js
# is vendored), and nothing inline, so injected markup could not run or phone home.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Revalidate on every load (a cheap 304 through the ETag): a new version is never half-cached.
REVALIDATE = "no-cache"

# StaticFiles resolves paths safely (no `..` out of the folder) and answers ETag/If-None-Match;
# used as a helper rather than a mount, because a router's mounts are not carried into the app.
_static = StaticFiles(directory=STATIC_DIR)


@router.get("/ui")
@router.get("/ui/")
def dashboard() -> FileResponse:
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": REVALIDATE}
    return FileResponse(INDEX_HTML, media_type="text/html", headers=headers)


@router.get("/ui/static/{path:path}")
async def static_file(path: str, request: Request) -> Response:
    """A file under app/ui/static (404 for anything else)."""
    response = await _static.get_response(path, request.scope)
    response.headers["Cache-Control"] = REVALIDATE
    return response
