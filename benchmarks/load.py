"""HTTP load from its own process: wrk when installed, else an async httpx client.

    python benchmarks/load.py URL [--method POST --body JSON] [--seconds 10]
        [--connections 32] [--token TOKEN]

Prints one JSON line: requests, seconds, requests per second, non-2xx answers. The load
stops by itself after ``--seconds``; it goes to loopback addresses only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from urllib.parse import urlparse

import httpx


def _with_wrk(args: argparse.Namespace) -> dict[str, float]:
    script = (
        f'wrk.method = "{args.method}"\n'
        f"wrk.body = {json.dumps(args.body or '')}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    if args.token:
        script += f'wrk.headers["Authorization"] = "Bearer {args.token}"\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        out = subprocess.run(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s", lua.name,
             args.url],
            capture_output=True, text=True, timeout=args.seconds + 60, check=True,
        ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    assert total, out
    seconds = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {"requests": int(total.group(1)), "seconds": seconds,
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": 1 if errors else 0}


async def _with_httpx(args: argparse.Namespace) -> dict[str, float]:
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    body = args.body.encode() if args.body else None
    counts = {"requests": 0, "non_2xx": 0}
    limits = httpx.Limits(max_connections=args.connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        deadline = time.monotonic() + args.seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                r = await client.request(args.method, args.url, content=body)
                counts["requests"] += 1
                if not 200 <= r.status_code < 300:
                    counts["non_2xx"] += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.connections)))
        return {**counts, "seconds": time.monotonic() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--token", default="")
    parser.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto")
    args = parser.parse_args()
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"load goes to loopback only, not {host}")
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    if use_wrk:
        args.seconds = max(1, round(args.seconds))
        result = _with_wrk(args)
    else:
        result = asyncio.run(_with_httpx(args))
    result["per_second"] = result["requests"] / result["seconds"]
    result["client"] = "wrk" if use_wrk else "httpx"  # type: ignore[assignment]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
