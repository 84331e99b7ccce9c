"""Keys of fleet uploads in the object store: `uploads/<warehouse>/<ms>-<robot>-<version>-<sha256>.npz`
for the default family (the layout before there were two), `uploads/<warehouse>/<family>/<...>.npz`
for any other: a family's retrain reads only its own robots' episodes.

The API writes them (api/routes/robots.py) and the retrain reads them (tasks/fleet_data.py), so the
format lives here, below both. The key carries the sha256 of the bytes the API accepted: every
read checks it.
"""
from __future__ import annotations

import hashlib
import re
import time

_DIGEST = re.compile(r"[0-9a-f]{64}")


DEFAULT_UPLOADS = "carracing-vmc"   # the family whose uploads sit directly under uploads/<warehouse>/


def upload_prefix(warehouse_id: str, model: str = DEFAULT_UPLOADS) -> str:
    return f"uploads/{warehouse_id}/" if model == DEFAULT_UPLOADS else f"uploads/{warehouse_id}/{model}/"


def upload_key(warehouse_id: str, robot_id: str, version: str, body: bytes, now: float | None = None,
               model: str = DEFAULT_UPLOADS) -> str:
    """Where the API stores an upload: its family, time (ms, for the window), robot, version and the
    sha256 of its bytes (what every read verifies)."""
    stamp = int((time.time() if now is None else now) * 1000)
    return f"{upload_prefix(warehouse_id, model)}{stamp}-{robot_id}-{version}-{hashlib.sha256(body).hexdigest()}.npz"


def upload_problem(key: str, body: bytes) -> str | None:
    """Why these bytes are not the upload `key` names (None: they are)."""
    digest = key.rsplit("/", 1)[-1].removesuffix(".npz").rsplit("-", 1)[-1]
    if not _DIGEST.fullmatch(digest):
        return "no content hash in its key (not stored by the API's upload route)"
    actual = hashlib.sha256(body).hexdigest()
    if actual != digest:
        return f"content hash {actual[:12]}... differs from the {digest[:12]}... it was uploaded with (changed since)"
    return None
