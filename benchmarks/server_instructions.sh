#!/usr/bin/env bash
# Instructions per request of a real uvicorn process (uvloop, httptools), counted by valgrind:
# the server under callgrind serves N keep-alive GET /ping requests, minus a run that serves
# none (start-up, imports, shutdown), divided by N. Deterministic: the machine's load does not
# move it. Figures in README "Performance" ("Where the time goes").
#
#   PYTHONPATH=.:src bash benchmarks/server_instructions.sh benchmarks.apps.bare:app
#   BENCH_ALGORITHM=fixed_window PYTHONPATH=.:src bash benchmarks/server_instructions.sh benchmarks.apps.ours:app
#   BENCH_HEADERS=none BENCH_ALGORITHM=fixed_window PYTHONPATH=.:src bash benchmarks/server_instructions.sh benchmarks.apps.ours:app
set -euo pipefail
app="$1"; n="${N:-2000}"; python="${PYTHON:-python}"
export PYTHONHASHSEED=0

count() {  # count REQUESTS -> instructions of the whole server process
  local port log pid
  port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$python" -m uvicorn "$app" --port "$port" \
    --log-level warning --no-access-log --loop uvloop --http httptools >"$log" 2>&1 &
  pid=$!
  "$python" - "$port" "$1" <<'PY'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 180
while True:  # the server starts slowly under valgrind
    try:
        c = http.client.HTTPConnection("127.0.0.1", port); c.request("GET", "/ping"); c.getresponse().read(); break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.5)
for _ in range(n):
    c.request("GET", "/ping"); c.getresponse().read()
PY
  kill -INT "$pid"; wait "$pid" || true
  grep -oP "Collected : \K[0-9]+" "$log"; rm -f "$log"
}

base=$(count 0); total=$(count "$n")
echo "$app: $(( (total - base) / n )) instructions a request (over $n requests)"
