#!/usr/bin/env bash
# Runs the Parley benchmark suite against a fresh server on a fresh database.
#
#   bench/run.sh            release build, every scenario at full scale; writes
#                           bench/results/<date>-<commit>.md and .jsonl and
#                           regenerates bench/README-section.md
#   bench/run.sh --smoke    every scenario at small scale with the correctness
#                           checks on; ends with "bench smoke: N passed, M failed"
#   bench/run.sh -- SCENARIO [ARGS…]
#                           one scenario against a fresh server (release build),
#                           e.g. `bench/run.sh -- idle --connections 5000`; prints
#                           its table and JSON line, writes no results file
#
# Environment:
#   PARLEY_BIN         server binary to run (smoke: skips the release build;
#                      e.g. PARLEY_BIN=target/debug/parley)
#   PARLEY_BENCH_BIN   bench binary (default: next to PARLEY_BIN, else target/release)
#   PARLEY_TEST_MYSQL  MySQL server URL without a database (default mysql://root@127.0.0.1:3306)
#   PARLEY_BENCH_DB_NODES  a Galera cluster instead: its nodes' URLs without a database,
#                      comma-separated (e.g. what `ha-cluster` prints); the server gets
#                      PARLEY__DATABASE__URLS with the run's database on each, the bench
#                      reads and checks through the first
#   PARLEY_BENCH_PBKDF2  server and bench PBKDF2 iterations (default 600000)
#   BENCH_ARGS         extra arguments for every scenario (full run)
#   BENCH_RUNS         runs of each scenario in a full run (default 3; medians reported)
#   PARLEY_SERVER_ENV  extra NAME=VALUE words for the server's environment, e.g.
#                      "PARLEY__DATABASE__WRITER_LANES=16" (to measure a setting)
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
ONE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --) shift; ONE=("$@"); break ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

SCENARIOS=6
fail_smoke() {
  echo "bench run: $*" >&2
  if [ "$SMOKE" = 1 ]; then echo "bench smoke: 0 passed, $SCENARIOS failed"; fi
  exit 1
}

if [ -n "${PARLEY_BIN:-}" ]; then
  BIN="$PARLEY_BIN"
  BENCH="${PARLEY_BENCH_BIN:-$(dirname "$BIN")/parley-bench}"
  if [ ! -x "$BENCH" ]; then
    cargo build --workspace --all-targets --locked >&2 || fail_smoke "build failed"
  fi
elif [ "$SMOKE" = 1 ]; then
  cargo build --workspace --all-targets --locked >&2 || fail_smoke "build failed"
  BIN=target/debug/parley
  BENCH=${PARLEY_BENCH_BIN:-target/debug/parley-bench}
else
  cargo build --release --workspace --bins --locked >&2 || fail_smoke "release build failed"
  BIN=target/release/parley
  BENCH=${PARLEY_BENCH_BIN:-target/release/parley-bench}
fi
[ -x "$BIN" ] || fail_smoke "no server binary at $BIN"
[ -x "$BENCH" ] || fail_smoke "no bench binary at $BENCH"

MYSQL_SERVER="${PARLEY_TEST_MYSQL:-mysql://root@127.0.0.1:3306}"
DB_NODES=()
if [ -n "${PARLEY_BENCH_DB_NODES:-}" ]; then
  IFS=, read -r -a DB_NODES <<<"${PARLEY_BENCH_DB_NODES// /}"
  MYSQL_SERVER="${DB_NODES[0]}"
fi
MYSQL_SERVER="${MYSQL_SERVER%/}"
SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')"
PBKDF2="${PARLEY_BENCH_PBKDF2:-600000}"
WORK="$(mktemp -d /tmp/parley-bench.XXXXXX)"

# A free port: nothing answers on it.
PORT=""
for p in $(seq 30100 30400); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || fail_smoke "no free port"

SERVER_PID=""
DB_URL=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
  if [ -n "$DB_URL" ]; then
    "$BENCH" drop-db --database-url "$DB_URL" >/dev/null 2>&1 || echo "bench run: could not drop $DB_NAME" >&2
  fi
  DB_URL=""
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT

# A fresh Parley on a fresh database (each full-run repetition gets its own, so
# no run inherits another's data or memory).
start_server() {
  DB_NAME="parley_bench_$(date +%s)_$$"
  DB_URL="$MYSQL_SERVER/$DB_NAME"
  local db_env=(PARLEY__DATABASE__URL="$DB_URL")
  if [ ${#DB_NODES[@]} -gt 0 ]; then
    local urls="" n
    for n in "${DB_NODES[@]}"; do urls="${urls:+$urls,}${n%/}/$DB_NAME"; done
    db_env=(PARLEY__DATABASE__URLS="$urls")
  fi
  env -i PATH="$PATH" HOME="${HOME:-/root}" \
    PARLEY__SERVER__HOST=127.0.0.1 \
    PARLEY__SERVER__PORT="$PORT" \
    "${db_env[@]}" \
    PARLEY__DATABASE__CREATE_IF_MISSING=true \
    PARLEY__AUTH__JWT_SECRET="$SECRET" \
    PARLEY__AUTH__PBKDF2_ITERATIONS="$PBKDF2" \
    PARLEY__STORAGE__UPLOADS_DIR="$WORK/uploads" \
    PARLEY__STATIC__DIR="$PWD/static" \
    PARLEY__METRICS__LISTEN="" \
    PARLEY__LIMITS__WS_EVENTS_PER_SEC=100000 \
    PARLEY__LIMITS__WS_EVENTS_BURST=100000 \
    PARLEY__LIMITS__LOGIN_PER_IP_PER_MIN=10000000 \
    PARLEY__LIMITS__LOGIN_PER_ACCOUNT_PER_MIN=10000000 \
    PARLEY__LIMITS__REGISTER_PER_IP_PER_MIN=10000000 \
    PARLEY__LOG__FORMAT=json \
    PARLEY__LOG__LEVEL=warn \
    ${PARLEY_SERVER_ENV:-} \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!

  URL="http://127.0.0.1:$PORT"
  for _ in $(seq 1 300); do
    if curl -fsS "$URL/api/ready" >/dev/null 2>&1; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; fail_smoke "server exited"; }
    sleep 0.1
  done
  curl -fsS "$URL/api/ready" >/dev/null 2>&1 || { tail -20 "$WORK/server.log" >&2; fail_smoke "server not ready"; }

  COMMON=(--url "$URL" --database-url "$DB_URL" --jwt-secret "$SECRET"
          --server-pid "$SERVER_PID" --pbkdf2-iterations "$PBKDF2")
}
export PARLEY_BENCH_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

if [ "$SMOKE" = 1 ]; then
  start_server
  "$BENCH" "${COMMON[@]}" --json-out "$WORK/smoke.jsonl" smoke >"$WORK/smoke.out"
  RC=$?
  grep -v '^bench smoke:' "$WORK/smoke.out"
  SUMMARY="$(grep '^bench smoke:' "$WORK/smoke.out" | tail -1)"
  if [ "$RC" != 0 ] && [ -s "$WORK/server.log" ]; then
    echo "--- server log (last 30 lines) ---"; tail -30 "$WORK/server.log"
  fi
  cleanup
  trap - EXIT
  if [ -z "$SUMMARY" ]; then SUMMARY="bench smoke: 0 passed, $SCENARIOS failed"; RC=1; fi
  echo "$SUMMARY"
  exit "$RC"
fi

if [ ${#ONE[@]} -gt 0 ]; then
  start_server
  "$BENCH" "${COMMON[@]}" "${ONE[@]}"
  exit $?
fi

# Full run: each scenario in its own process, so one failure does not stop the rest.
mkdir -p bench/results
STAMP="$(date -u +%Y-%m-%d)-$PARLEY_BENCH_COMMIT"
JSONL="bench/results/$STAMP.jsonl"
MD="bench/results/$STAMP.md"
: >"$JSONL"
FAILED=0
run() {
  echo "### parley-bench $*" >&2
  "$BENCH" "${COMMON[@]}" --json-out "$JSONL" "$@" ${BENCH_ARGS:-} || FAILED=$((FAILED + 1))
}
# Each scenario BENCH_RUNS times (default 3), each repetition on a fresh server and
# database: the README shows the medians.
for _ in $(seq 1 "${BENCH_RUNS:-3}"); do
  start_server
  run throughput --pairs 100 --window 10
  run throughput --pairs 100 --window 10 --delivered
  run latency --rate 5000
  run fanout --groups 5 --size 100
  run idle --connections 19000
  run login-storm --in-flight 200 --rate 2000
  run history --messages 1000000 --chats 1000
  stop_server
done
"$BENCH" report --jsonl "$JSONL" --md "$MD" --readme bench/README-section.md
echo "results: $MD $JSONL"
echo "bench run: $FAILED scenario runs failed"
[ "$FAILED" = 0 ]
