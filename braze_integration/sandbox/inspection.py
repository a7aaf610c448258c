"""The sandbox's own endpoints under `/sandbox/`: look at what arrived, and change the settings.

Reading: the HTML overview (`/sandbox/`), profiles (`/sandbox/users`, `/sandbox/users/<id>`),
counters (`/sandbox/stats`) and the request log (`/sandbox/requests?limit=N`). Changing:
`/sandbox/faults` (fault settings and the rate limits), `/sandbox/keys` (keys and their
permissions) and `/sandbox/reset`. Braze has none of these; they exist for tests and people.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

from .braze_endpoints import reject_json_constant
from .config import RateLimit, parse_optional_rate_limit

if TYPE_CHECKING:
    from .httpd import SandboxRequestHandler
    from .server import SandboxServer

DEFAULT_REQUESTS_LIMIT = 100
HTML_PROFILE_LIMIT = 1000
KEY_SETS = ("api_keys", "track_only_keys", "no_permission_keys")
# Fault settings that are rate limits, each for one Braze endpoint.
RATE_LIMIT_SETTINGS = ("rate_limit", "delete_rate_limit")


def route_get(request: SandboxRequestHandler, path: str, query: str) -> None:
    """Answer a GET under `/sandbox`."""
    sandbox = request.sandbox
    store = sandbox.store
    if path in ("/sandbox", "/sandbox/"):
        request.send(200, render_overview(sandbox).encode("utf-8"), "text/html; charset=utf-8")
    elif path == "/sandbox/users":
        keys = store.profile_keys()
        request.send_json(200, {"count": len(keys), "external_ids": keys})
    elif path.startswith("/sandbox/users/"):
        profile = store.profile(unquote(path.removeprefix("/sandbox/users/")))
        if profile is None:
            request.send_json(404, {"message": "not found"})
        else:
            request.send_json(200, profile)
    elif path == "/sandbox/stats":
        request.send_json(200, store.stats())
    elif path == "/sandbox/requests":
        _requests_log(request, query)
    elif path == "/sandbox/faults":
        request.send_json(200, sandbox.runtime_settings())
    elif path == "/sandbox/keys":
        request.send_json(200, sandbox.keys.as_dict())
    else:
        request.send_not_found()


def route_post(request: SandboxRequestHandler, path: str, body: bytes) -> None:
    """Answer a POST under `/sandbox/` (the body is already read)."""
    if path == "/sandbox/reset":
        request.sandbox.reset()
        request.send_json(200, {"message": "reset"})
    elif path == "/sandbox/faults":
        _faults_update(request, body)
    elif path == "/sandbox/keys":
        _keys_update(request, body)
    else:
        request.send_not_found()


def _faults_update(request: SandboxRequestHandler, body: bytes) -> None:
    """Change some fault settings and rate limits; all or nothing."""
    changes = _decode_object(body)
    if changes is None:
        request.send_json(400, {"message": "Expected a JSON object"})
        return
    rate_limits = {name: changes.pop(name) for name in RATE_LIMIT_SETTINGS if name in changes}
    try:
        parsed = {name: _rate_limit_from_json(name, value) for name, value in rate_limits.items()}
        request.sandbox.update_faults(**changes)
    except (TypeError, ValueError) as err:
        request.send_json(400, {"message": str(err)})
        return
    if "rate_limit" in parsed:
        request.sandbox.set_rate_limit(parsed["rate_limit"])
    if "delete_rate_limit" in parsed:
        request.sandbox.set_delete_rate_limit(parsed["delete_rate_limit"])
    request.send_json(200, request.sandbox.runtime_settings())


def _keys_update(request: SandboxRequestHandler, body: bytes) -> None:
    """Replace some of the key sets; the others stay as they are."""
    changes = _decode_object(body)
    if (
        changes is None
        or not set(changes) <= set(KEY_SETS)
        or not all(
            isinstance(keys, list) and all(isinstance(key, str) for key in keys) for keys in changes.values()
        )
    ):
        expected = ", ".join(f'"{name}": [...]' for name in KEY_SETS)
        request.send_json(400, {"message": f"Expected {{{expected}}} (each optional, a list of strings)"})
        return
    request.sandbox.set_api_keys(**changes)
    request.send_json(200, request.sandbox.keys.as_dict())


def _requests_log(request: SandboxRequestHandler, query: str) -> None:
    values = parse_qs(query).get("limit", [str(DEFAULT_REQUESTS_LIMIT)])
    try:
        limit = int(values[-1])
        if limit < 0:
            raise ValueError
    except ValueError:
        request.send_json(400, {"message": "limit must be a non-negative integer"})
        return
    entries = request.sandbox.store.recent_requests(limit)
    request.send_json(200, {"count": len(entries), "requests": entries})


def _decode_object(body: bytes) -> dict[str, Any] | None:
    try:
        decoded = json.loads(body or b"{}", parse_constant=reject_json_constant)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _rate_limit_from_json(name: str, value: Any) -> RateLimit | None:
    """`"3000/3s"`, `[3000, 3]`, or null / `"off"` for no limit."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_optional_rate_limit(value)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from err
    if (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) is int
        and type(value[1]) in (int, float)
        and value[0] >= 1
        and value[1] > 0
    ):
        return value[0], float(value[1])
    raise ValueError(f'{name} must be like "3000/3s", [3000, 3], "off" or null')


def render_overview(sandbox: SandboxServer) -> str:
    """A plain HTML page listing profiles, so a person can look at what arrived."""
    store = sandbox.store
    stats = store.stats()
    summaries = store.profile_summaries(limit=HTML_PROFILE_LIMIT)
    rows = "\n".join(
        '<tr><td><a href="/sandbox/users/{href}">{key}</a></td>'
        "<td>{attributes}</td><td>{events}</td><td>{purchases}</td></tr>".format(
            href=html.escape(quote(summary.key, safe=""), quote=True),
            key=html.escape(summary.key),
            attributes=summary.attribute_count,
            events=summary.event_count,
            purchases=summary.purchase_count,
        )
        for summary in summaries
    )
    more = stats["users"] - len(summaries)
    more_note = f"<p>… and {more} more (see /sandbox/users).</p>" if more > 0 else ""
    status_counts = ", ".join(
        f"{html.escape(status)}: {count}" for status, count in sorted(stats["requests_by_status"].items())
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Braze sandbox</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }}
</style></head>
<body>
<h1>Braze sandbox</h1>
<p>{stats["users"]} profiles · {stats["requests"]} requests ({status_counts or "none"}) ·
{stats["data_points"]} data points · {stats["events_stored"]} events ·
{stats["purchases_stored"]} purchases · {stats["users_deleted"]} deleted ·
<a href="/sandbox/stats">stats</a> · <a href="/sandbox/requests">recent requests</a> ·
<a href="/sandbox/faults">faults</a> · <a href="/sandbox/keys">keys</a></p>
<table>
<thead><tr><th>external_id</th><th>attributes</th><th>events</th><th>purchases</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{more_note}
</body></html>
"""
