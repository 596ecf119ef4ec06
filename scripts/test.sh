#!/usr/bin/env bash
# Runs every test: the Rust suites (unit, API, cluster, deployment) against real
# MariaDB, Redis and nginx; the browser suite in Debian's Chromium; and a smoke pass
# of every benchmark scenario. Services and tools are started or installed when
# missing. One build (the dev profile) serves all of it. Ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
set -e
ensure_rust
ensure_mariadb
ensure_redis
ensure_test_tools
set +e
export PARLEY_TEST_MYSQL="$PARLEY_MYSQL_SERVER"

passed=0
failed=0
count() { # count PASSED FAILED
  passed=$((passed + ${1:-0}))
  failed=$((failed + ${2:-0}))
}

echo "== build"
if ! cargo build --workspace --all-targets --locked; then
  echo "build failed"
  echo "total: 0 passed, 1 failed"
  exit 1
fi

echo "== rust suites"
log=$(mktemp)
if cargo nextest --version >/dev/null 2>&1; then
  # Everything else first, then the cases that measure latency or stop services
  # under load, alone (see .config/nextest.toml).
  p=0
  f=0
  for profile in parallel serial; do
    cargo nextest run --workspace --locked --no-fail-fast --profile "$profile" 2>&1 | tee "$log"
    summary=$(grep -E 'Summary \[' "$log" | tail -1)
    pp=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")
    ff=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")
    if [ -z "$pp" ]; then pp=0; ff=${ff:-1}; fi
    p=$((p + pp))
    f=$((f + ${ff:-0}))
  done
else
  cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
  p=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) passed.*/\1/p' | paste -sd+ | bc)
  f=$(grep -E '^test result:' "$log" | sed -nE 's/.* ([0-9]+) failed.*/\1/p' | paste -sd+ | bc)
fi
if [ -z "${p:-}" ]; then p=0; f=${f:-1}; fi
echo "rust: ${p} passed, ${f:-0} failed"
count "$p" "${f:-0}"

echo "== browser suite"
if [ -x tests/browser/run.sh ]; then
  tests/browser/run.sh 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$log" | tail -1)
  f=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$log" | tail -1)
  if [ -z "$p" ]; then p=0; f=1; fi
  if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then f=1; fi
  echo "browser: ${p} passed, ${f:-0} failed"
  count "$p" "${f:-0}"
fi

echo "== bench smoke"
if [ -x bench/run.sh ]; then
  PARLEY_BIN=target/debug/parley bench/run.sh --smoke 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^bench smoke: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  p=$(sed -nE 's/.*: ([0-9]+) passed.*/\1/p' <<<"$line")
  f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
  if [ -z "$p" ]; then p=0; f=1; fi
  if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then f=1; fi
  count "$p" "${f:-0}"
fi
rm -f "$log"

echo "total: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
