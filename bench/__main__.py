"""`python -m bench [scheduler|incoming|idle|track_latency]`: run benchmarks (all by default)."""

from __future__ import annotations

import asyncio
import importlib
import sys

NAMES = ("scheduler", "incoming", "idle", "track_latency")


def main(argv: list[str]) -> int:
    names = argv or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}")
        return 2
    for name in names:
        print(f"== {name}")
        module = importlib.import_module(f"bench.{name}")
        if name == "track_latency":  # has its own argument parser and event loop
            module.main([])
        else:
            asyncio.run(module.main())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
