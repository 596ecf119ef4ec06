#!/usr/bin/env bash
# Runs every test: unit and API tests against real MariaDB and Redis (started or
# installed when missing). Ends with the test runner's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_rust
ensure_mariadb
ensure_redis
export PARLEY_TEST_MYSQL="$PARLEY_MYSQL_SERVER"

# One build of one profile (dev, dependencies optimized) serves every suite below.
cargo build --workspace --all-targets --locked

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
