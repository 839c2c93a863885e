"""/ui/: the dashboard, static files in api/ui/ that call the API from the browser with the key
the person pasted (docs/api.md, "Dashboard")."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

# The page holds an API key: only its own scripts may run, nothing may frame it, and no request
# it makes tells another site where it came from.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    # Relative asset paths in index.html resolve under /ui/ only with the trailing slash.
    return RedirectResponse("/ui/", status_code=307)


class _UiFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        # Revalidated on each load (ETag makes that cheap): a new release's page never runs old scripts.
        response.headers["Cache-Control"] = "no-cache"
        return response


files = _UiFiles(directory=UI_DIR, html=True)
