"""Command-line options of the sandbox, shared by `python -m braze_integration.sandbox` and the
`braze_sandbox` Django management command, so the two never drift apart."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .config import (
    BRAZE_DELETE_RATE_LIMIT,
    BRAZE_TRACK_RATE_LIMIT,
    DEFAULT_HANG_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    FaultConfig,
    RateLimit,
    SandboxConfig,
    format_rate_limit,
    parse_optional_rate_limit,
)
from .server import SandboxServer

DEFAULT_PORT = 9400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox options to a parser (argparse's, or Django's command parser)."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        default=[],
        metavar="KEY",
        help="accepted REST API key, may track and delete (repeatable)",
    )
    parser.add_argument(
        "--track-only-key",
        dest="track_only_keys",
        action="append",
        default=[],
        metavar="KEY",
        help="key with users.track but without users.delete (repeatable)",
    )
    parser.add_argument(
        "--no-permission-key",
        dest="no_permission_keys",
        action="append",
        default=[],
        metavar="KEY",
        help="key that exists but lacks every permission (answers 403; repeatable)",
    )
    parser.add_argument(
        "--max-objects",
        type=_positive_int,
        default=75,
        help="objects allowed per request across all arrays (default %(default)s)",
    )
    parser.add_argument(
        "--per-array-limit",
        type=_positive_int,
        default=None,
        help="use the older rule instead: at most this many objects per array",
    )
    parser.add_argument(
        "--max-array-length",
        type=_positive_int,
        default=500,
        help="longest array attribute (default %(default)s; 25 on older accounts)",
    )
    parser.add_argument(
        "--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES, help="413 beyond"
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=BRAZE_TRACK_RATE_LIMIT,
        metavar="N/WINDOW",
        help=(
            "/users/track fixed-window limit such as 3000/3s or 50000/1m, or 'off' "
            f"(default: Braze's {format_rate_limit(BRAZE_TRACK_RATE_LIMIT)})"
        ),
    )
    parser.add_argument(
        "--delete-rate-limit",
        type=_rate_limit,
        default=BRAZE_DELETE_RATE_LIMIT,
        metavar="N/WINDOW",
        help=f"/users/delete limit, or 'off' (default: Braze's {format_rate_limit(BRAZE_DELETE_RATE_LIMIT)})",
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered 500/503")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to answers")
    parser.add_argument(
        "--timeout-rate", type=float, default=0.0, help="share that hang, then close unanswered"
    )
    parser.add_argument(
        "--hang-seconds",
        type=float,
        default=DEFAULT_HANG_SECONDS,
        help="how long a 'timeout' hangs (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the fault dice")
    parser.add_argument("--log-requests", action="store_true", help="log every request to stderr")


def config_from_options(options: Mapping[str, Any]) -> SandboxConfig:
    """Build the `SandboxConfig` from parsed options (argparse namespace vars or Django's)."""
    return SandboxConfig(
        api_keys=frozenset(options["api_keys"] or ()),
        no_permission_keys=frozenset(options["no_permission_keys"] or ()),
        track_only_keys=frozenset(options["track_only_keys"] or ()),
        host=options["host"],
        port=options["port"],
        max_objects=options["max_objects"],
        per_array_limit=options["per_array_limit"],
        max_array_length=options["max_array_length"],
        max_body_bytes=options["max_body_bytes"],
        rate_limit=options["rate_limit"],
        delete_rate_limit=options["delete_rate_limit"],
        faults=FaultConfig(
            error_rate=options["error_rate"],
            latency_ms=options["latency_ms"],
            timeout_rate=options["timeout_rate"],
            hang_seconds=options["hang_seconds"],
            seed=options["seed"],
        ),
        log_requests=options["log_requests"],
    )


def serve_until_interrupted(config: SandboxConfig, *, announce: Callable[[str], None] = print) -> None:
    """Run the sandbox in the foreground until Ctrl-C."""
    with SandboxServer(config) as server:
        announce(f"Braze sandbox listening on {server.url}")
        announce(f"  REST endpoint: {server.url}  (POST {server.track_url}, {server.delete_url})")
        announce(f"  inspect:       {server.url}/sandbox/")
        if not config.api_keys:
            announce("  warning: no --api-key given, every request will answer 401")
        announce("Quit with Ctrl-C.")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            announce("Stopping the Braze sandbox.")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m braze_integration.sandbox`."""
    parser = argparse.ArgumentParser(
        prog="python -m braze_integration.sandbox",
        description="Local Braze /users/track and /users/delete sandbox.",
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except ValueError as err:
        parser.error(str(err))
    serve_until_interrupted(config, announce=lambda line: print(line, flush=True))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate_limit(text: str) -> RateLimit | None:
    try:
        return parse_optional_rate_limit(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
