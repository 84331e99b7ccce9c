"""The rollout dashboard at /ui: one static page (api/ui/dashboard.html, no build step) that polls
GET /api/v1/deployments and calls the same promote and rollback routes, with the caller's token."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).resolve().parent.parent / "ui" / "dashboard.html"
# Only this origin: the page loads nothing from elsewhere (no CDN), and no other site may frame it
# (a framed page could trick an engineer into clicking Roll back).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # a new release's page, not a stale one
}

router = APIRouter(tags=["ui"], include_in_schema=False)


@router.get("/ui", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    """The page needs no token to load; every figure and action behind it asks for one."""
    return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers=HEADERS)
