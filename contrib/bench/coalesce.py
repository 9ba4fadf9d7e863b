#!/usr/bin/python3
"""Fires N concurrent HTTP requests carrying the same token at once (standard library only).

All N connections are opened first; then every request is written in the same loop turn, so they
all reach HAProxy within a few milliseconds, well inside the stub's introspection delay. Prints one
JSON line: {"requests", "ok", "statuses", "elapsed_s", "req_per_s", "p50_ms", "p99_ms"}.
Used by run-bench.sh for the coalescing row (the IdP call count is read from the stub).
"""

import argparse
import asyncio
import json
import sys
import time


async def one(host, port, path, token, ready, start, results):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        results.append((0, 0.0))
        ready.arrived()
        return
    req = ("GET %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
           "Connection: close\r\n\r\n" % (path, token)).encode()
    ready.arrived()
    await start.wait()
    t0 = time.perf_counter()
    writer.write(req)
    status = 0
    try:
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        await reader.read()  # Connection: close; HAProxy ends the body with the close
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
        pass
    results.append((status, time.perf_counter() - t0))
    writer.close()


class Countdown:
    """Set once n tasks have arrived."""

    def __init__(self, n):
        self.left = n
        self.event = asyncio.Event()

    def arrived(self):
        self.left -= 1
        if self.left <= 0:
            self.event.set()


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


async def run(args):
    start = asyncio.Event()
    ready = Countdown(args.n)
    results = []
    tasks = [asyncio.ensure_future(one(args.host, args.port, args.path, args.token, ready, start,
                                       results)) for _ in range(args.n)]
    await asyncio.wait_for(ready.event.wait(), 30)  # every connection open (or failed)
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - t0
    lat = sorted(r[1] * 1000.0 for r in results)
    statuses = {}
    for s, _ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    return {"requests": args.n, "ok": statuses.get("200", 0), "statuses": statuses,
            "elapsed_s": round(elapsed, 4), "req_per_s": round(len(results) / elapsed, 1),
            "p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/api/bench")
    p.add_argument("--token", required=True)
    p.add_argument("-n", type=int, default=1000)
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
