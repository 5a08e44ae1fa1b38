"""`xft serve`: a run's adapters over HTTP, hot-swapped at run time, with dynamic batching across requests.

The app is `xft_core.inference.app.create_app`; this module only builds the router and starts uvicorn.
fastapi, uvicorn and the model load inside `cmd_serve`, so `xft --help` stays instant. Safe defaults
(docs/security.md): loopback bind; adapter administration needs an admin token unless the server is on loopback;
PUT loads only from the adapter roots (default: the folder being served).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from xft_core.cli.options import add_precision, chosen_precision
from xft_core.hooks import CommandSpec, hookimpl


@hookimpl
def xft_commands():
    yield CommandSpec(name="serve", register=register, description="serve adapters over HTTP with hot-swap and dynamic batching")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve adapters over HTTP with hot-swap and dynamic batching",
        description=(
            "Serve a run's per-language adapters over HTTP: POST /v1/predict, GET/PUT/DELETE /v1/adapters, GET /healthz. "
            "Concurrent requests are batched together across languages; adapters load, swap and unload at run time."
        ),
    )
    p.add_argument("target", metavar="RUN_OR_ADAPTER",
                   help="a run folder (runs/<name>), its adapters/ folder, or one adapter package")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--capacity", type=int, default=8, help="adapters held in memory at once (LRU eviction; pinned ones stay)")
    add_precision(p)
    p.add_argument("--fallback", default=None, metavar="NAME",
                   help="adapter for languages without their own (default: the base model)")
    p.add_argument("--fallback-map", default=None, metavar="FILE", type=Path,
                   help="a JSON file: language -> adapter, merge or ensemble (docs/transfer.md), or the sources.json of "
                        "`xft eval` (each language to its best source); --fallback, when given too, serves every other language")
    p.add_argument("--device", default=None,
                   help="torch device for the model, e.g. cuda:0 (default: a GPU where there is one, else the CPU)")
    # the limits' defaults are create_app's, written out here so that building the parser imports no fastapi
    p.add_argument("--max-batch", type=int, default=64, help="most rows run in one forward pass across requests")
    p.add_argument("--max-wait-ms", type=float, default=5, help="longest a request waits for others to share its batch")
    p.add_argument("--max-request-rows", type=int, default=256, help="most inputs in one request (413 above)")
    p.add_argument("--max-text-chars", type=int, default=4096, help="longest text accepted (413 above)")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="largest request body (413 above)")
    p.add_argument("--admin-token", default=None, metavar="TOKEN",
                   help="token that PUT/DELETE /v1/adapters must send as 'Authorization: Bearer TOKEN' (at least 16 "
                        "characters). Prefer the environment variable XFT_ADMIN_TOKEN: arguments show in `ps`. Without a "
                        "token, adapter administration is open on a loopback address only, and off otherwise")
    p.add_argument("--adapter-root", action="append", default=None, metavar="DIR", dest="adapter_roots",
                   help="a folder PUT /v1/adapters may load packages from (repeatable; default: RUN_OR_ADAPTER). Paths "
                        "are judged after resolving symbolic links and '..'")
    p.add_argument("--shutdown-timeout", type=float, default=30,
                   help="on SIGTERM/Ctrl-C, seconds to let requests in flight finish before they are cut (default 30)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default info)")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False, help="log every request")
    p.set_defaults(func=cmd_serve)


def build_router(target: str | Path, *, capacity: int = 8, fallback: str | None = None, device: str | None = None,
                 precision: str | None = None, fallback_map: Path | None = None) -> Any:
    """A Router over a run folder (its adapters/*), a folder of adapter packages, or one package; the precision
    given, else the run's own (printed once)."""
    from xft_core.inference.fallback import with_default
    from xft_core.inference.router import Router

    fallback = with_default(fallback_map, fallback)
    precision = chosen_precision(precision, target, device)
    return Router.from_run(Path(target).expanduser(), capacity=capacity, fallback=fallback, device=device, precision=precision)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from xft_core.inference.app import create_app
    from xft_core.inference.security import TOKEN_ENV, AdminAccess, is_loopback

    token = args.admin_token if args.admin_token is not None else os.environ.get(TOKEN_ENV) or None
    roots = [Path(root).expanduser() for root in (args.adapter_roots or [args.target])]
    trust_loopback = is_loopback(args.host)
    AdminAccess(token, trust_loopback=trust_loopback, roots=roots)  # a too-short token fails before the model loads
    router = build_router(args.target, capacity=args.capacity, fallback=args.fallback, device=args.device,
                          precision=args.precision, fallback_map=args.fallback_map)
    app = create_app(
        router,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_request_rows=args.max_request_rows,
        max_text_chars=args.max_text_chars,
        max_body_bytes=args.max_body_bytes,
        admin_token=token,
        trust_loopback=trust_loopback,
        adapter_roots=roots,
        drain_seconds=args.shutdown_timeout,
    )
    print(f"xft serve on {args.host}:{args.port}; {app.state.access.describe()}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                timeout_graceful_shutdown=args.shutdown_timeout)
    return 0
