#!/usr/bin/env bash
# Runs Parley for development on http://127.0.0.1:30000: starts (or installs) MariaDB,
# creates the database, applies the migrations, and serves the SPA and the API.
# Extra arguments go to `parley serve`; PARLEY__* variables override the config.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_rust
ensure_mariadb

# A stable development secret, so tokens survive restarts (kept out of git).
if [ ! -s .parley-dev.env ]; then
  umask 077
  echo "PARLEY__AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > .parley-dev.env
fi
set -a; source .parley-dev.env; set +a
export PARLEY__DATABASE__URL=${PARLEY__DATABASE__URL:-"$PARLEY_MYSQL_SERVER/parley"}

# The same build as scripts/test.sh, so switching between them rebuilds nothing.
cargo build --workspace --all-targets --locked
exec target/debug/parley serve "$@"
