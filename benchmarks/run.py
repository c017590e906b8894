"""Throughput of FastAPI rate limiters, side by side, in one run on one machine.

    python -m benchmarks.run                      # everything (about 10 minutes)
    python -m benchmarks.run --quick              # shorter runs, fewer algorithms
    python -m benchmarks.run --only ours,bare --duration 5

Each case serves the same one-route app with one uvicorn worker (uvloop, httptools)
and loads it over loopback with wrk (64 connections) when wrk is installed, the server
and wrk pinned to different cores when there are two; without wrk an in-process ASGI
driver measures the middleware path alone. Prints requests per second, latency
percentiles and the ratio to the bare app, saves JSON and a PNG chart under
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ALGORITHMS = ["sliding_window", "fixed_window", "token_bucket", "leaky_bucket", "gcra", "sliding_window_log", "queue"]


@dataclass
class Case:
    name: str
    app: str
    scenario: str = "allowed"
    storage: str = "memory"
    algorithm: str = "sliding_window"
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    case: str
    scenario: str
    storage: str
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: str
    ratio: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def _get(port: int, path: str = "/ping") -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(65536)
    return int(data.split(b" ", 2)[1])


_LAT = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port: int, duration: float, connections: int) -> tuple[float, float, float, str]:
    cmd = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           f"http://127.0.0.1:{port}/ping"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): _ms(m.group(2), m.group(3)) for m in _LAT.finditer(out)}
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    n_total = int(total.group(1)) if total else 0
    n_bad = int(non2xx.group(1)) if non2xx else 0
    return rps, lat.get("50", 0.0), lat.get("99", 0.0), f"2xx:{n_total - n_bad} other:{n_bad}"


async def _asgi_drive(app_path: str, duration: float, concurrency: int) -> tuple[float, float, float, str]:
    import importlib

    import httpx

    module, attr = app_path.split(":")
    app = getattr(importlib.import_module(module), attr)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    counts: dict[int, int] = {}
    lat: list[float] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await client.get("/ping")
                lat.append(time.perf_counter() - t0)
                counts[r.status_code] = counts.get(r.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    total = sum(counts.values())
    return (total / elapsed, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000,
            f"2xx:{sum(v for k, v in counts.items() if k < 300)} other:{sum(v for k, v in counts.items() if k >= 300)}")


def measure(case: Case, duration: float, connections: int, use_wrk: bool, redis_url: str) -> Result:
    env = dict(os.environ)
    env.update({"BENCH_SCENARIO": case.scenario, "BENCH_STORAGE": case.storage, "BENCH_ALGORITHM": case.algorithm,
                "BENCH_REDIS_URL": redis_url, "BENCH_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
                "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"})
    env.update(case.env)
    if not use_wrk:
        os.environ.update(env)
        for mod in [m for m in sys.modules if m.startswith("benchmarks.apps")]:
            del sys.modules[mod]
        rps, p50, p99, st = asyncio.run(_asgi_drive(case.app, duration, connections))
        return Result(case.name, case.scenario, case.storage, rps, p50, p99, st)
    port = free_port()
    cmd = [*_pin(0), sys.executable, "-m", "uvicorn", case.app, "--port", str(port), "--host", "127.0.0.1",
           "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        _wait_port(port)
        _get(port)  # the refused scenario: the first request takes the only unit
        run_wrk(port, min(2.0, duration), connections)  # warm-up
        rps, p50, p99, st = run_wrk(port, duration, connections)
        return Result(case.name, case.scenario, case.storage, rps, p50, p99, st)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cases(quick: bool, only: set[str] | None) -> list[Case]:
    out = [Case("bare", "benchmarks.apps.bare:app")]
    algos = ["sliding_window", "gcra"] if quick else ALGORITHMS
    for storage in ("memory", "redis"):
        for algo in algos:
            for scenario in ("allowed", "refused"):
                out.append(Case(f"ours {algo}", "benchmarks.apps.ours:app", scenario, storage, algo))
        for scenario in ("allowed", "refused"):
            out.append(Case("slowapi", "benchmarks.apps.slowapi_app:app", scenario, storage))
            out.append(Case("fastapi-advanced-rate-limiter", "benchmarks.apps.advanced_app:app", scenario, storage))
    for scenario in ("allowed", "refused"):
        out.append(Case("fastapi-limiter", "benchmarks.apps.fastapi_limiter_app:app", scenario, "memory"))
    if only:
        out = [c for c in out if c.name.split()[0] in only]
    return out


def table(results: list[Result]) -> str:
    lines = [f"{'case':<40} {'scenario':<8} {'storage':<7} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6}  statuses",
             "-" * 110]
    for r in results:
        lines.append(f"{r.case:<40} {r.scenario:<8} {r.storage:<7} {r.rps:>9.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
                     f"{r.ratio:>6.2f}  {r.statuses}")
    return "\n".join(lines)


def chart(results: list[Result], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install -e '.[bench]')")
        return
    labels = [f"{r.case} ({r.storage}, {r.scenario})" for r in results]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(results) + 1.5))
    colors = ["#4c72b0" if r.case.startswith("ours") else "#999999" if r.case == "bare" else "#dd8452"
              for r in results]
    ax.barh(range(len(results)), [r.ratio for r in results], color=colors)
    ax.set_yticks(range(len(results)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("throughput relative to the bare FastAPI app (same run)")
    ax.set_title("FastAPI rate limiters: requests per second / bare app")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart: {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of load per case")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="two algorithms only")
    ap.add_argument("--only", help="comma-separated case names: bare,ours,slowapi,fastapi-limiter,fastapi-advanced-rate-limiter")
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--no-wrk", action="store_true", help="use the in-process ASGI driver")
    args = ap.parse_args(argv)
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    only = set(args.only.split(",")) | {"bare"} if args.only else None
    todo = cases(args.quick, only)
    print(f"{len(todo)} cases, {args.duration}s each, driver: {'wrk' if use_wrk else 'in-process ASGI'}", flush=True)
    results: list[Result] = []
    for i, case in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {case.name} {case.storage} {case.scenario} ...", end=" ", flush=True)
        r = measure(case, args.duration, args.connections, use_wrk, args.redis_url)
        print(f"{r.rps:.0f} req/s", flush=True)
        results.append(r)
    bare = results[0].rps
    for r in results:
        r.ratio = r.rps / bare if bare else 0.0
    print()
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
            "processor": platform.processor(), "driver": "wrk" if use_wrk else "asgi", "duration": args.duration,
            "connections": args.connections, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    (RESULTS / "latest.json").write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2))
    chart(results, RESULTS / "latest.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
