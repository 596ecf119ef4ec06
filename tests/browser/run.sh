#!/usr/bin/env bash
# Browser tests of the Parley web client: Debian's chromium driven by playwright-core,
# against a real Parley started by the tests (its own MySQL database and port).
#
#   tests/browser/run.sh              # every test file
#   tests/browser/run.sh tests/call.test.js
#
# Environment: PARLEY_BIN (default ../../target/debug/parley), PARLEY_TEST_MYSQL
# (default mysql://root@127.0.0.1:3306), CHROMIUM_BIN (default /usr/bin/chromium).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
  echo "installing chromium…" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x "${PARLEY_BIN:-../../target/debug/parley}" ]; then
  echo "building parley…" >&2
  (cd ../.. && cargo build --workspace --all-targets --locked)
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

mkdir -p artifacts
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(tests/*.test.js)
fi
exec node --test --test-concurrency=1 "${files[@]}"
