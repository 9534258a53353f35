"""POST/s of the webhook transport, against the raw-client ceiling.

    .venv/bin/python bench/transport.py [--rounds 4] [--seconds 1] [--concurrency 16] [--uvloop]

One bare uvicorn+starlette receiver runs in its own process; every client
below runs in this process, one after the other, at the same concurrency
against that same receiver, and is reported as a ratio of the raw client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
from collections.abc import Awaitable, Callable

import httpx
from _baseline import Measurement, measure, raw_post_measure, run_uvicorn_receiver

from hub.webhooks.transport import FastTransport

BODY = b'{"type":"message.created","data":{"id":"m_1","text":"hello"}}'
HEADERS = {"content-type": "application/json"}


async def _httpx(
    client: httpx.AsyncClient, url: str, concurrency: int, seconds: float
) -> Measurement:
    async def send() -> None:
        response = await client.post(url, content=BODY, headers=HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"receiver answered {response.status_code}")

    async with client:
        return await measure([send] * concurrency, seconds=seconds)


async def _fast_path(url: str, concurrency: int, seconds: float) -> Measurement:
    transport = FastTransport()

    async def send() -> None:
        result = await transport.post(url, BODY, HEADERS)
        if result.status != 200:
            raise RuntimeError(f"receiver answered {result.status}")

    try:
        return await measure([send] * concurrency, seconds=seconds)
    finally:
        await transport.aclose()


async def _run(
    port: int, concurrency: int, seconds: float, rounds: int
) -> dict[str, list[Measurement]]:
    url = f"http://127.0.0.1:{port}/hook"
    runs: dict[str, Callable[[], Awaitable[Measurement]]] = {
        "raw asyncio client": lambda: raw_post_measure("127.0.0.1", port, concurrency, seconds),
        "FastTransport.post (fast path)": lambda: _fast_path(url, concurrency, seconds),
        "httpx.AsyncClient + FastTransport": lambda: _httpx(
            httpx.AsyncClient(transport=FastTransport()), url, concurrency, seconds
        ),
        "httpx.AsyncClient (default transport)": lambda: _httpx(
            httpx.AsyncClient(), url, concurrency, seconds
        ),
    }
    # Round-robin short runs, so a noisy neighbour skews every client alike.
    rates: dict[str, list[Measurement]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            rates[name].append(await run())
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="measured time per run")
    parser.add_argument("--rounds", type=int, default=4, help="runs per client, interleaved")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--uvloop", action="store_true", help="run the clients on uvloop")
    args = parser.parse_args()
    loop_factory = None
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with run_uvicorn_receiver() as port, asyncio.Runner(loop_factory=loop_factory) as runner:
        rates = runner.run(_run(port, args.concurrency, args.seconds, args.rounds))
    rate = {name: statistics.median(m.rate for m in runs) for name, runs in rates.items()}
    cpu = {name: statistics.median(m.cpu_per_call for m in runs) for name, runs in rates.items()}
    raw = rate["raw asyncio client"]
    print(
        f"POST/s at {args.concurrency} concurrent, median of {args.rounds} interleaved "
        f"{args.seconds:g}s runs; client loop {'uvloop' if args.uvloop else 'asyncio'}; "
        f"receiver: uvicorn+starlette, own process; Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {os.cpu_count()} CPUs"
    )
    print(f"  {'client':<38} {'POST/s':>8} {'of raw':>7}  {'client CPU/req':>14}  runs (POST/s)")
    for name, runs in rates.items():
        spread = f"{min(m.rate for m in runs):,.0f}-{max(m.rate for m in runs):,.0f}"
        print(
            f"  {name:<38} {rate[name]:>8,.0f} {rate[name] / raw:>7.1%}"
            f"  {cpu[name] * 1e6:>11,.0f} us  {spread}"
        )


if __name__ == "__main__":
    main()
