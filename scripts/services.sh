#!/usr/bin/env bash
# Makes sure MariaDB and Redis answer on 127.0.0.1 (installing them with apt-get when
# missing), and that the development account `parley`@localhost exists with rights on
# the `parley` and `parley_test_*` databases. Idempotent; sourced by run.sh and test.sh.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root for: $*"; return 1
  fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PARLEY_DB_USER=${PARLEY_DB_USER:-parley}
PARLEY_DB_PASSWORD=${PARLEY_DB_PASSWORD:-parley}
export PARLEY_MYSQL_SERVER="mysql://${PARLEY_DB_USER}:${PARLEY_DB_PASSWORD}@127.0.0.1:3306"

# Runs SQL as a MariaDB administrator: root over TCP with no password (CI images),
# root over the socket (Debian's default unix_socket auth), or through sudo.
mysql_admin() {
  if mysql -uroot -h127.0.0.1 -e 'SELECT 1' >/dev/null 2>&1; then mysql -uroot -h127.0.0.1 "$@"
  elif mysql -uroot -e 'SELECT 1' >/dev/null 2>&1; then mysql -uroot "$@"
  else as_root mysql -uroot "$@"
  fi
}

ensure_mariadb() {
  if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server mariadb-client
  fi
  if ! mysqladmin -h127.0.0.1 -uroot ping >/dev/null 2>&1 && ! mysqladmin ping >/dev/null 2>&1 \
     && ! mysql -h127.0.0.1 -u"$PARLEY_DB_USER" -p"$PARLEY_DB_PASSWORD" -e 'SELECT 1' >/dev/null 2>&1; then
    log "starting MariaDB"
    as_root install -d -o mysql -g mysql /run/mysqld
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    for _ in $(seq 1 60); do
      mysqladmin -h127.0.0.1 -uroot ping >/dev/null 2>&1 && break
      as_root mysqladmin ping >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  if ! mysql -h127.0.0.1 -u"$PARLEY_DB_USER" -p"$PARLEY_DB_PASSWORD" -e 'SELECT 1' >/dev/null 2>&1; then
    log "creating the MariaDB account ${PARLEY_DB_USER}"
    mysql_admin <<SQL
CREATE USER IF NOT EXISTS '${PARLEY_DB_USER}'@'localhost' IDENTIFIED BY '${PARLEY_DB_PASSWORD}';
CREATE USER IF NOT EXISTS '${PARLEY_DB_USER}'@'127.0.0.1' IDENTIFIED BY '${PARLEY_DB_PASSWORD}';
GRANT ALL PRIVILEGES ON \`parley%\`.* TO '${PARLEY_DB_USER}'@'localhost';
GRANT ALL PRIVILEGES ON \`parley%\`.* TO '${PARLEY_DB_USER}'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
  fi
  mysql -h127.0.0.1 -u"$PARLEY_DB_USER" -p"$PARLEY_DB_PASSWORD" -e 'SELECT 1' >/dev/null \
    || { log "MariaDB does not accept ${PARLEY_DB_USER} on 127.0.0.1:3306"; return 1; }
}

ensure_redis() {
  if ! command -v redis-server >/dev/null; then apt_install redis-server redis-tools; fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
    for _ in $(seq 1 40); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { log "Redis does not answer on 127.0.0.1:6379"; return 1; }
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
      command -v curl >/dev/null || apt_install curl ca-certificates
      log "installing Rust with rustup"
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cc >/dev/null || apt_install build-essential
}

# What the test suites drive: nginx (deployment tests), Chromium (browser suite),
# Node.js and npm (browser suite, WebCrypto interop), openssl (TURN check),
# systemd-analyze (unit check). cargo-nextest is used when present, else cargo test.
ensure_test_tools() {
  local missing=()
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  command -v mariadb-install-db >/dev/null || missing+=(mariadb-server)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  # Debian starts nginx on install; the tests run their own instances.
  if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    as_root systemctl stop nginx || true
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_rust
  ensure_mariadb
  ensure_redis
  log "MariaDB and Redis are up"
fi
