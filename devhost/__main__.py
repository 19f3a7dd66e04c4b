"""`python -m devhost`: run function_app.py locally like `func start`, without Core Tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from .config import DevHostError, load_local_settings
from .host import DevHost, default_host_json
from .loader import load_app

log = logging.getLogger("devhost")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument(
        "--app",
        default="function_app:app",
        help="module:attribute of the FunctionApp (default function_app:app)",
    )
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    parser.add_argument(
        "--host-json",
        default=None,
        help="host.json path (default: next to the app module, else ./host.json)",
    )
    parser.add_argument(
        "--local-settings",
        default="local.settings.json",
        help="local.settings.json whose Values become app settings if not set",
    )
    parser.add_argument("--no-http", action="store_true", help="do not serve HTTP triggers")
    parser.add_argument("--no-timers", action="store_true", help="do not run timer triggers")
    parser.add_argument("--no-queues", action="store_true", help="do not poll queue triggers")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(host: DevHost) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully; a second signal exits at once."""
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("Second %s: exiting without waiting", sig.name)
            os._exit(130)
        log.info("%s received: stopping (running invocations may finish)", sig.name)
        host.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await host.start()
    log.info("Host started. Press Ctrl+C to stop.")
    try:
        await host.wait_stopped()
    finally:
        await host.stop()
        log.info("Host stopped.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        added = load_local_settings(args.local_settings, os.environ)
        if added:
            log.info("Loaded %d settings from %s", added, args.local_settings)
        app = load_app(args.app)
        module = sys.modules.get(args.app.partition(":")[0])
        host_json = (
            Path(args.host_json)
            if args.host_json
            else default_host_json(getattr(module, "__file__", None))
        )
        host = DevHost(
            app,
            port=args.port,
            host=args.host,
            host_json_path=host_json,
            http=not args.no_http,
            timers=not args.no_timers,
            queues=not args.no_queues,
        )
        asyncio.run(serve(host))
    except DevHostError as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
