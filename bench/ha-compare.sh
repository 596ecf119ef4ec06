#!/usr/bin/env bash
# The README's "Galera cluster next to one MariaDB" figures: the throughput and
# latency scenarios, alternating a single MariaDB and a Galera cluster on the same
# box, each run on a fresh Parley and database (bench/run.sh -- SCENARIO), plus the
# CPU every mariadbd process used during the run (µs per stored message).
#
#   PARLEY_BIN=target/profiling/parley PARLEY_BENCH_BIN=target/profiling/parley-bench \
#   HA_GALERA_NODES="mysql://root@127.0.0.1:P1,mysql://root@127.0.0.1:P2,mysql://root@127.0.0.1:P3" \
#     bench/ha-compare.sh [OUT.jsonl]
#
# HA_GALERA_NODES: what `ha-cluster` prints as PARLEY__DATABASE__URLS, without the
# database names. HA_SINGLE: the single server (default PARLEY_TEST_MYSQL or
# mysql://root@127.0.0.1:3306). HA_RUNS: runs of each (default 3). HA_GALERA_MODE:
# `urls` (default: Parley gets every node, database.urls) or `node1` (only the first
# node, database.url: for a build without database.urls).
# Each JSON line of OUT (default bench/results/ha-<date>.jsonl) is one scenario run,
# with "db" (single | galera) and "dbCpuUsPerMsg" added.
set -uo pipefail
cd "$(dirname "$0")/.."

: "${HA_GALERA_NODES:?set HA_GALERA_NODES (see the top of this file)}"
SINGLE=${HA_SINGLE:-${PARLEY_TEST_MYSQL:-mysql://root@127.0.0.1:3306}}
RUNS=${HA_RUNS:-3}
MODE=${HA_GALERA_MODE:-urls}
OUT=${1:-bench/results/ha-$(date -u +%Y-%m-%d).jsonl}
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d /tmp/ha-compare.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The port of a mysql://…host:port URL.
port_of() { local hp=${1##*@}; hp=${hp%%/*}; echo "${hp##*:}"; }
# Total CPU seconds (user + system) of the mariadbd processes listening on the ports.
db_cpu() {
  local total=0 port pid
  for port in "$@"; do
    pid=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    [ -n "$pid" ] || { echo "no process listens on port $port" >&2; exit 1; }
    total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" '{ print t + ($14 + $15) / hz }' "/proc/$pid/stat")
  done
  echo "$total"
}

IFS=, read -r -a NODES <<<"${HA_GALERA_NODES// /}"
SINGLE_PORTS=("$(port_of "$SINGLE")")
GALERA_PORTS=()
for n in "${NODES[@]}"; do GALERA_PORTS+=("$(port_of "$n")"); done

one() { # db scenario args...
  local db=$1; shift
  local ports=() envs=()
  if [ "$db" = single ]; then
    ports=("${SINGLE_PORTS[@]}"); envs=(PARLEY_TEST_MYSQL="$SINGLE" PARLEY_BENCH_DB_NODES=)
  elif [ "$MODE" = node1 ]; then
    ports=("${GALERA_PORTS[@]}"); envs=(PARLEY_TEST_MYSQL="${NODES[0]}" PARLEY_BENCH_DB_NODES=)
  else
    ports=("${GALERA_PORTS[@]}"); envs=(PARLEY_BENCH_DB_NODES="$HA_GALERA_NODES")
  fi
  rm -f "$TMP/one.jsonl"
  local c0 c1
  c0=$(db_cpu "${ports[@]}")
  echo "### $db: $*" >&2
  env "${envs[@]}" bench/run.sh -- --json-out "$TMP/one.jsonl" "$@" | grep -E '^==|p99|msg/s|stored' >&2
  c1=$(db_cpu "${ports[@]}")
  [ -s "$TMP/one.jsonl" ] || { echo "no result for $db $*" >&2; return; }
  # Messages stored: the scenario's "rows in MySQL" figure. The CPU window also holds
  # the server's start (migrations): a fixed cost of well under a second of CPU.
  python3 - "$TMP/one.jsonl" "$db" "$c0" "$c1" "$MODE" >>"$OUT" <<'PY'
import json, sys
line = json.loads(open(sys.argv[1]).read().splitlines()[-1])
db, c0, c1, mode = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
figs = line.get("figures", {})
stored = next((v for k, v in figs.items() if k.endswith("rows in MySQL")), None)
line["db"] = db if db == "single" else f"galera-{mode}"
line["dbCpuSecs"] = round(c1 - c0, 3)
if stored:
    line["dbCpuUsPerMsg"] = round((c1 - c0) * 1e6 / stored, 2)
print(json.dumps(line))
PY
}

for i in $(seq 1 "$RUNS"); do
  for db in single galera; do
    one "$db" throughput --pairs 100 --window 10
    one "$db" latency --rate 5000
  done
done
echo "results: $OUT" >&2
