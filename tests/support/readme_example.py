"""Print the README's demo example again, from a real run: ``fastapi-ratelimits demo``
under uvicorn on a free port, and ``/items/42`` asked six times; the first and the sixth
responses are printed as ``curl -i`` prints them.

    python tests/support/readme_example.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from support.servers import free_port, wait_until


def as_curl(r: httpx.Response) -> str:
    lines = [f"HTTP/1.1 {r.status_code} {r.reason_phrase}"]
    lines += [f"{k}: {v}" for k, v in r.headers.multi_items()]
    return "\n".join(lines) + "\n\n" + r.text


def main() -> int:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastapi_ratelimits", "demo", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30.0, what="the demo")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            seen = [c.get("/items/42") for _ in range(6)]
        print(f"# at {time.strftime('%H:%M:%S', time.gmtime())} UTC\n")
        print(as_curl(seen[0]))
        print()
        print(as_curl(seen[5]))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
