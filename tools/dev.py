"""`make dev` (`python -m tools.dev`): the local Functions host against the sandbox, in one
command. Starts Azurite, the sandbox and function_app.py under devhost with every setting
they need, prints how to call the API, and runs until Ctrl-C; nothing is enabled for you
(`make demo` does that).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from tools.stack import ROOT, StackError, start_stack, stop_on_signals, try_it_lines


def options(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The options `make dev` and `make demo` share."""
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--port", type=int, default=7071, help="HTTP port of the local host")
    parser.add_argument("--sandbox-port", type=int, default=8443,
                        help="HTTPS port of the sandbox (0 picks a free one)")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".sandbox",
                        help="the sandbox's CA, settings.env and lock (default .sandbox)")
    return parser


def fail(error: StackError) -> int:
    for line in str(error).splitlines():
        print(line, file=sys.stderr, flush=True)
    return 1


async def run(args: argparse.Namespace) -> int:
    try:
        stack = await start_stack(port=args.port, sandbox_port=args.sandbox_port,
                                  state=args.state_dir.resolve(), what="a local stack")
    except StackError as error:
        return fail(error)
    try:
        stop_on_signals(stack.host)
        print(f"== ready: {stack.api_url} (sandbox {stack.sandbox.base_url}); Ctrl-C stops. "
              "Try it from another shell:", flush=True)
        for line in try_it_lines(stack):
            print("   " + line, flush=True)
        await stack.host.wait_stopped()
    finally:
        await stack.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = options("python -m tools.dev", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # URLs may carry addresses
    sys.path.insert(0, str(ROOT))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
