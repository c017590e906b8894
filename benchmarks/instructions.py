"""Instructions per request, counted by valgrind's callgrind: a figure the machine's load cannot move.

    PYTHONPATH=.:src python -m benchmarks.instructions                    # bare + ours, every algorithm
    PYTHONPATH=.:src python -m benchmarks.instructions --algorithms gcra --storage memory
    PYTHONPATH=.:src python -m benchmarks.instructions --n 2000 --redis-url redis://127.0.0.1:6380/0

One Python process runs under ``valgrind --tool=callgrind`` and serves every case in turn
through the in-process ASGI driver of ``benchmarks/inprocess.py`` (the app's ASGI callable
called directly: no sockets, no HTTP parsing, no uvicorn): it builds the case's app (the
same apps the wrk runner serves), runs its startup, sends ``--warmup`` requests, then
``--n`` requests between two calls of ``os.getpgrp()``. Callgrind is told to dump its
counters whenever that C function is entered (``--dump-before=os_getpgrp*``; nothing else
in the process calls it), so each measured stretch is counted on its own: start-up, imports,
building the app and warming up are outside it, and one valgrind run serves every case.
The figure is that stretch's instructions divided by ``--n`` (the two marker calls add a few
hundred instructions in all, under one per request). ``PYTHONHASHSEED=0`` makes reruns give
the same counts to within a fraction of a percent (the garbage collector and the Redis
replies' timing move them a little).

What is not a request's own cost is kept out of the stretch, as it is off the request path
at real speed:

* the refusal log: the benchmark apps set the ``fastapi_ratelimits`` logger to WARNING, as a
  production app does (``benchmarks/apps/common.py``; docs/reference/logging.md), so a
  refused request's log call is the level check alone. (Left on, it writes ten lines per
  second of wall time, and under valgrind a second is a few dozen to a few hundred requests.)
* the top callers' flusher (``fastapi_ratelimits.ops.top``): a task of the app's lifespan that
  folds the buffered hits into the summaries twice a second of wall time (on Redis, one
  pipeline each). Under valgrind, about 50 times slower, a flush would fall every few dozen
  counted requests. The app's module exposes its ``install()`` handle as ``limits``
  (``benchmarks/apps/ours.py``), and this process calls ``limits.top.stop()`` after the
  warm-up (which folds the warm-up's hits, uncounted), counts, then ``limits.top.start()``
  again; the shutdown folds the counted requests' hits. The request path's part, one
  ``deque.append`` per request, is counted. ``benchmarks.run``'s wrk and in-process runs
  leave the flusher running, as in production.

Redis cases run ``--concurrency`` requests at a time (16 by default: the coalescing of
decisions into one call is part of what a loaded server does); the others one at a time.
``ratio`` is the bare app's instructions per request divided by the case's: what the
throughput ratio to the bare app would be if every instruction took the same time.

Needs valgrind (``apt-get install valgrind``); without it this says so and exits 1, and
``benchmarks.run`` leaves its instruction columns empty.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "os_getpgrp*"  # the C function of os.getpgrp() in CPython


@dataclass
class Spec:
    """One case for the counting process: which app, with which BENCH_* environment."""

    key: str
    app: str
    env: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1


@dataclass
class Counted:
    instructions: float  # per request
    statuses: dict[int, int]


def unavailable() -> str | None:
    """Why instructions cannot be counted here, or None when they can."""
    if shutil.which("valgrind") is None:
        return "valgrind not installed (apt-get install valgrind)"
    return None


def _load(spec: Spec) -> tuple[Any, Any]:
    """The case's app, and its ``install()`` handle (the module's ``limits``) or None."""
    for name in [k for k in os.environ if k.startswith("BENCH_")]:  # nothing of the previous case
        del os.environ[name]
    os.environ.update(spec.env)
    for mod in [m for m in sys.modules if m.startswith("benchmarks.apps")]:
        del sys.modules[mod]
    module_name, attr = spec.app.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr), getattr(module, "limits", None)


async def _child(specs: list[Spec], n: int, warmup: int) -> None:
    from benchmarks.inprocess import _drive, _lifespan

    for spec in specs:
        app, limits = _load(spec)
        stop = await _lifespan(app)
        statuses: dict[int, int] = {}
        try:
            conc = spec.concurrency
            await _drive(app, max(conc, warmup - warmup % conc), conc, {})  # the refused scenario's unit goes here
            top = getattr(limits, "top", None)  # the top callers (fastapi_ratelimits.ops.top)
            if top is not None:
                await top.stop()  # the flusher held off; the warm-up's hits folded now, not counted
            gc.collect()
            os.getpgrp()  # callgrind dumps: what came before is not counted
            await _drive(app, n - n % conc, conc, statuses)
            os.getpgrp()  # callgrind dumps: the n requests
            if top is not None:
                top.start()  # as in production again; the shutdown folds the counted requests' hits
        finally:
            await stop()
        print(json.dumps({"key": spec.key, "statuses": statuses}), flush=True)


def _totals(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split(":", 1)[1].split()[0])
    raise RuntimeError(f"no totals in {path}")


def count(specs: list[Spec], n: int = 200, warmup: int = 50, timeout: float = 900.0,
          progress: Callable[[str], None] | None = None) -> dict[str, Counted]:
    """Instructions per request of each spec, from one valgrind run."""
    reason = unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    n = max(n, max(s.concurrency for s in specs))
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        spec_file = Path(tmp) / "specs.json"
        spec_file.write_text(json.dumps({"n": n, "warmup": warmup, "specs": [s.__dict__ for s in specs]}))
        out = Path(tmp) / "cg.out"
        env = dict(os.environ)
        env.update({"PYTHONHASHSEED": "0",
                    "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}"})
        cmd = ["valgrind", "-q", "--tool=callgrind", f"--dump-before={MARKER}", f"--callgrind-out-file={out}",
               sys.executable, "-m", "benchmarks.instructions", "--child", str(spec_file)]
        err_file = Path(tmp) / "stderr.txt"
        seen: dict[str, dict[int, int]] = {}
        with err_file.open("w") as err:
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
            watchdog = threading.Timer(timeout, proc.kill)  # a process that hangs ends its stdout too
            watchdog.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if not line.startswith("{"):
                        continue
                    row = json.loads(line)
                    seen[row["key"]] = {int(k): v for k, v in row["statuses"].items()}
                    if progress is not None:
                        progress(row["key"])
                proc.wait()
            finally:
                watchdog.cancel()
        if proc.returncode != 0:
            raise RuntimeError(f"the counting process failed ({proc.returncode}): {err_file.read_text()[-2000:]}")
        # dump k (file cg.out.k) holds what ran since dump k-1: .1 start-up, .2 the first case's
        # requests, .3 the second case's set-up, .4 its requests, ...
        parts = sorted(Path(tmp).glob("cg.out.*"), key=lambda p: int(p.suffix[1:]))
        if len(parts) != 2 * len(specs):
            raise RuntimeError(f"callgrind dumped {len(parts)} times, not {2 * len(specs)}: it did not see the "
                               f"marker function {MARKER} (a Python without symbols?)")
        return {s.key: Counted(_totals(parts[2 * i + 1]) / (n - n % s.concurrency), seen.get(s.key, {}))
                for i, s in enumerate(specs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="requests counted per case")
    ap.add_argument("--warmup", type=int, default=50, help="requests per case before counting")
    ap.add_argument("--concurrency", type=int, default=16, help="requests at a time for the Redis cases")
    ap.add_argument("--algorithms", help="comma-separated (default: all seven)")
    ap.add_argument("--storage", default="memory,redis", help="comma-separated: memory,redis")
    ap.add_argument("--redis-url", help="a Redis to use (default: a redis-server of this run's own)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        data = json.loads(Path(args.child).read_text())
        run: Callable[..., Any] = asyncio.run
        try:
            import uvloop

            run = uvloop.run
        except ImportError:  # pragma: no cover - the bench extra installs it
            pass
        run(_child([Spec(**s) for s in data["specs"]], data["n"], data["warmup"]))
        return 0
    from benchmarks.run import ALGORITHMS, OwnRedis, bare_case, cases, count_instructions

    algorithms = args.algorithms.split(",") if args.algorithms else ALGORITHMS
    storages = args.storage.split(",")
    todo = cases(algorithms, {"ours"}, storages)
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url or ""
        if "redis" in storages and not redis_url:
            redis_url = stack.enter_context(OwnRedis()).url
        counted = count_instructions(todo, redis_url, args.n, args.concurrency, args.warmup)[0]
    if not counted:
        return 1
    bare = counted[bare_case().key].instructions
    names = {case.key: f"{case.label} {case.storage} {case.scenario}" for case in [bare_case(), *todo]}
    w = max(len(x) for x in names.values())
    print(f"{'case':<{w}} {'instr/req':>10} {'ratio':>6}  statuses")
    for case in [bare_case(), *todo]:
        c = counted[case.key]
        print(f"{names[case.key]:<{w}} {c.instructions:>10,.0f} "
              f"{bare / c.instructions:>6.2f}  {dict(sorted(c.statuses.items()))}")
    print(f"({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
