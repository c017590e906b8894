"""Exact under contention: two OS processes x 100 concurrent callers against one limit of
37 on the shared Redis admit exactly 37 in total, for every algorithm that refuses
(the queue admits with a delay instead, and is left out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis

ALGORITHMS = ["token_bucket", "leaky_bucket", "fixed_window", "sliding_window", "sliding_window_log", "gcra"]
WORKER = Path(__file__).parent / "support" / "exact_worker.py"
SRC = Path(__file__).resolve().parent.parent / "src"


def test_two_processes_admit_exactly_the_limit(redis_url: str, key_prefix: str) -> None:
    barrier = f"{key_prefix}:barrier:{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(WORKER), redis_url, key_prefix, "37", "100", barrier, "2", *ALGORITHMS]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    try:
        for algorithm in ALGORITHMS:
            per_process = [o[algorithm] for o in outputs]
            assert sum(per_process) == 37, f"{algorithm}: {per_process} admitted"
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{key_prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
