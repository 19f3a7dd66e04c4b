"""Track latency: the add-in's POST /api/track against the sandbox with 20 ms added per upstream
call, through function_app.py exactly as the Functions host calls it.

Reports p50/p99 of the call, and the sequential upstream round trips on its path: every
Graph/Dataverse/Entra HTTP request is recorded (start, end) by wrapping the httpx and requests
transports, and the critical path is the longest chain of requests each starting after the
previous one ended. The goal is at most 3 sequential round trips and p99 under 25 ms above the
sum of those round trips' latencies. Warm (OBO tokens cached) and cold (a new user token per
call, so both OBO exchanges happen) are measured separately.

The time above the round-trip sum is broken down (`breakdown`): response bodies read after
the headers, storage not overlapped by upstream requests, the other parallel requests of a
round (the critical path counts one request per round), and the rest (own CPU, event loop).

    python -m bench.track_latency [--calls 200] [--cold-calls 100] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "track_latency.json"
USER = "alex@contoso.com"


@dataclass
class Span:
    service: str
    start: float
    end: float  # response headers received (what the round-trip figures count)
    body_end: float | None = None  # response body read (httpx requests only)


SPANS: list[Span] = []
RECORDING = False
_SENDING: contextvars.ContextVar[list[Span] | None] = contextvars.ContextVar("sending",
                                                                              default=None)


def _service(url: str) -> str:
    if "/v1.0/" in url:
        return "graph"
    if "/api/data/" in url:
        return "dataverse"
    if "/oauth2/" in url or "openid-configuration" in url or "/keys" in url:
        return "entra"
    return "other"


def instrument() -> None:
    """Record every upstream request's span (httpx for Graph/Dataverse, requests for msal)."""
    import httpx
    import requests

    from shared.http.transport import AiohttpTransport

    for transport in (httpx.AsyncHTTPTransport, AiohttpTransport):
        _time_transport(transport)
    original_client_send = httpx.AsyncClient.send

    async def timed_client_send(self: Any, request: Any, **kwargs: Any) -> Any:
        """When the response body has been read too (AsyncClient.send reads it unless
        streaming): the time from headers to body is not counted as upstream latency above."""
        sent: list[Span] = []
        token = _SENDING.set(sent)
        try:
            return await original_client_send(self, request, **kwargs)
        finally:
            _SENDING.reset(token)
            if sent and not kwargs.get("stream"):
                sent[-1].body_end = time.perf_counter()

    httpx.AsyncClient.send = timed_client_send  # type: ignore[method-assign]
    original_send = requests.Session.send

    def timed_send(self: Any, request: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_send(self, request, **kwargs)
        finally:
            if RECORDING:
                SPANS.append(Span(_service(str(request.url)), start, time.perf_counter()))

    requests.Session.send = timed_send  # type: ignore[method-assign]
    import aiohttp

    original_request = aiohttp.ClientSession._request

    async def timed_request(self: Any, method: str, url: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await original_request(self, method, url, **kwargs)
        finally:
            # Graph/Dataverse also go through aiohttp (AiohttpTransport, timed above)
            if RECORDING and _service(str(url)) == "other":
                SPANS.append(Span("storage", start, time.perf_counter()))

    aiohttp.ClientSession._request = timed_request  # type: ignore[method-assign]


def _time_transport(transport: Any) -> None:
    """Record the span of every request an httpx transport class sends."""
    original = transport.handle_async_request

    async def timed(self: Any, request: Any) -> Any:
        start = time.perf_counter()
        try:
            return await original(self, request)
        finally:
            if RECORDING:
                span = Span(_service(str(request.url)), start, time.perf_counter())
                SPANS.append(span)
                sending = _SENDING.get()
                if sending is not None:
                    sending.append(span)

    transport.handle_async_request = timed


def critical_path(spans: list[Span]) -> list[Span]:
    """The longest chain of spans where each starts after the previous ended (greedy by end
    time gives the maximum number of non-overlapping spans)."""
    chain: list[Span] = []
    for span in sorted(spans, key=lambda s: s.end):
        if not chain or span.start >= chain[-1].end:
            chain.append(span)
    return chain


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(intervals: list[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def _minus(these: list[tuple[float, float]], those: list[tuple[float, float]]
           ) -> list[tuple[float, float]]:
    """Parts of the (merged) intervals `these` not covered by the (merged) `those`."""
    out = []
    for start, end in these:
        cursor = start
        for other_start, other_end in those:
            if other_end <= cursor or other_start >= end:
                continue
            if other_start > cursor:
                out.append((cursor, other_start))
            cursor = max(cursor, other_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def breakdown(spans: list[Span], path: list[Span], elapsed_ms: float) -> dict[str, float]:
    """Where the time above the round-trip sum goes, in ms, for one call:
    body_wait - on the critical path, from a response's headers to its body being read (the
    round-trip figures count up to the headers only);
    storage_exposed - Table/Queue Storage time not overlapped by any upstream request;
    round_spread - the rest of the time some upstream request was in flight (parallel requests
    of a round that started or ended at other times than the critical-path one);
    other - everything else: our own CPU (token validation, request building, JSON, the SDKs)
    and the event loop;
    no_upstream_in_flight - the time no Graph/Dataverse/Entra request was in flight at all
    (storage_exposed + other): what the app and Table Storage cost on their own."""
    path_ms = sum((s.end - s.start) * 1000 for s in path)
    body = sum(((s.body_end or s.end) - s.end) * 1000 for s in path)
    upstream = _union([(s.start, s.body_end or s.end) for s in spans
                       if s.service in ("graph", "dataverse", "entra")])
    storage = _union([(s.start, s.end) for s in spans if s.service == "storage"])
    exposed = _length(_minus(storage, upstream)) * 1000
    busy = _length(upstream) * 1000
    spread = max(0.0, busy - path_ms - body)
    other = elapsed_ms - path_ms - body - exposed - spread
    return {"body_wait": body, "storage_exposed": exposed, "round_spread": spread,
            "other": other, "no_upstream_in_flight": elapsed_ms - busy}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def start_azurite() -> tuple[subprocess.Popen[bytes], Any, str]:
    from tests.fixtures.azurite import (
        AZURITE_BIN,
        HOST,
        AzuriteHandle,
        _free_ports,
        _wait_until_listening,
    )

    blob, queue, table = _free_ports(3)
    workdir = tempfile.mkdtemp(prefix="azurite-bench-")
    command = [str(AZURITE_BIN), "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
               "--silent", "--blobHost", HOST, "--blobPort", str(blob), "--queueHost", HOST,
               "--queuePort", str(queue), "--tableHost", HOST, "--tablePort", str(table)]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    _wait_until_listening(process, [blob, queue, table])
    return process, AzuriteHandle(blob, queue, table), workdir


async def measure(host: Any, calls: int, *, cold: bool) -> dict[str, Any]:
    global RECORDING
    from shared.sync.intents import drain_bookkeeping

    token = host.sandbox.user_token(USER, scopes=["access_as_user"])
    latencies: list[float] = []
    trips: list[int] = []
    sums: list[float] = []
    excess: list[float] = []
    services: dict[str, int] = {}
    parts: dict[str, list[float]] = {}
    storage_trips: list[int] = []
    storage_ms: list[float] = []
    if not cold:
        # Warm means this token's OBO tokens are cached: one untimed call exchanges them (the
        # first timed call used to pay both exchanges, which showed as a 4th round trip).
        delivered = host.sandbox.control.post("/_sandbox/graph/deliver", json={
            "to": [USER], "from": "ana@fabrikam.com", "subject": f"Warm-up {uuid.uuid4().hex}",
            "body": "<p>bench</p>"}).json()["value"][0]
        await host.http("addin_track", "POST", "track", token=token,
                        body={"item_id": delivered["immutableId"]})
    for _ in range(calls):
        delivered = host.sandbox.control.post("/_sandbox/graph/deliver", json={
            "to": [USER], "from": "ana@fabrikam.com", "subject": f"Bench {uuid.uuid4().hex}",
            "body": "<p>bench</p>"}).json()["value"][0]
        if cold:
            token = host.sandbox.user_token(USER, scopes=["access_as_user"])
        SPANS.clear()
        RECORDING = True
        started = time.perf_counter()
        response = await host.http("addin_track", "POST", "track", token=token,
                                   body={"item_id": delivered["immutableId"]})
        elapsed = (time.perf_counter() - started) * 1000
        RECORDING = False
        # The answer leaves before its bookkeeping writes land (shared/sync/intents.py); let
        # them land before the next call, as they do between one user's clicks, rather than
        # stall behind the blocking `deliver` below and run inside the next timed call.
        await drain_bookkeeping()
        if response.status != 200:
            raise RuntimeError(f"track answered {response.status}: {response.body[:300]!r}")
        upstream = [s for s in SPANS if s.service in ("graph", "dataverse", "entra")]
        path = critical_path(upstream)
        stored = [s for s in SPANS if s.service == "storage"]
        storage_trips.append(len(critical_path(stored)))
        storage_ms.append(sum((s.end - s.start) * 1000 for s in critical_path(stored)))
        path_ms = sum((s.end - s.start) * 1000 for s in path)
        latencies.append(elapsed)
        trips.append(len(path))
        sums.append(path_ms)
        excess.append(elapsed - path_ms)
        for span in path:
            services[span.service] = services.get(span.service, 0) + 1
        for name, value in breakdown(SPANS, path, elapsed).items():
            parts.setdefault(name, []).append(value)
    return {
        "calls": calls,
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "sequential_round_trips_median": statistics.median(trips),
        "sequential_round_trips_max": max(trips),
        "round_trip_sum_ms_median": round(statistics.median(sums), 1),
        "p99_minus_round_trip_sum_ms": round(percentile(excess, 0.99), 1),
        "storage_sequential_round_trips_median": statistics.median(storage_trips),
        "storage_ms_median": round(statistics.median(storage_ms), 1),
        "critical_path_services_per_call": {k: round(v / calls, 2)
                                            for k, v in sorted(services.items())},
        # Where the time above the round-trip sum goes (see `breakdown`); per component,
        # median and p99 over the calls (p99s of parts do not add up to the p99 of the whole).
        "above_round_trip_sum_ms": {
            name: {"p50": round(percentile(values, 0.50), 1),
                   "p99": round(percentile(values, 0.99), 1)}
            for name, values in parts.items()},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fixtures.app import FunctionHost, app_environment
    from tests.fixtures.sandbox import start_sandbox

    state = Path(tempfile.mkdtemp(prefix="sandbox-bench-")) / "state"
    state.mkdir()
    sandbox = start_sandbox(state)
    azurite, handle, workdir = start_azurite()
    try:
        os.environ["SSL_CERT_FILE"] = sandbox.ca_path
        os.environ["REQUESTS_CA_BUNDLE"] = sandbox.ca_path
        os.environ.update(app_environment(sandbox, handle.connection_string, "bench"))
        from shared.settings import get_settings

        get_settings.cache_clear()
        module = importlib.import_module("function_app")
        host = FunctionHost(module, sandbox)
        instrument()
        await measure(host, 3, cold=False)  # connections and JWKS warm, tables created
        rules = [{"service": s, "kind": "latency", "latency_ms": args.latency_ms,
                  "count": None} for s in ("graph", "dataverse", "entra")]
        sandbox.faults(*rules)
        warm = await measure(host, args.calls, cold=False)
        cold = await measure(host, args.cold_calls, cold=True)
        sandbox.clear_faults()
        from shared.runtime import reset_runtime

        await reset_runtime()
    finally:
        sandbox.close()
        azurite.terminate()
        azurite.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return {"added_latency_ms": args.latency_ms, "warm": warm, "cold": cold,
            "goal": {"max_sequential_round_trips": 3,
                     "max_p99_above_round_trip_sum_ms": 25}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cold-calls", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"track latency, {args.latency_ms} ms added per upstream call")
    print(f"{'':6} {'calls':>5} {'p50 ms':>8} {'p99 ms':>8} {'trips':>6} {'trip sum ms':>12} "
          f"{'p99-sum ms':>11}")
    for name in ("warm", "cold"):
        r = result[name]
        print(f"{name:6} {r['calls']:>5} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r['sequential_round_trips_max']:>6} {r['round_trip_sum_ms_median']:>12} "
              f"{r['p99_minus_round_trip_sum_ms']:>11}")
    print("above the round-trip sum, p50/p99 ms: body wait after headers | storage not "
          "overlapped | rest of upstream rounds | own CPU and loop || no upstream in flight")
    for name in ("warm", "cold"):
        a = result[name]["above_round_trip_sum_ms"]
        print(f"{name:6} " + " | ".join(f"{a[k]['p50']}/{a[k]['p99']}" for k in
                                        ("body_wait", "storage_exposed", "round_spread",
                                         "other")) +
              f" || {a['no_upstream_in_flight']['p50']}/{a['no_upstream_in_flight']['p99']}")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
