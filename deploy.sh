#!/usr/bin/env bash
# deploy.sh: install, upgrade, roll back and inspect a Parley server on Debian.
#
#   sudo ./deploy.sh install     first install: user, directories, config, secrets,
#                                database account, release, unit, nginx site, start
#   sudo ./deploy.sh upgrade     a new release from this checkout; back to the old one
#                                by itself when the new one does not become ready
#   sudo ./deploy.sh rollback    switch to the previous release and restart
#   ./deploy.sh status           releases, service state, readiness
#
# Layout (every path below --prefix DIR, or DESTDIR, when given):
#   /opt/parley/releases/<id>/   parley, static/, migrations/, the shipped unit/site/config
#   /opt/parley/current          symlink to the running release (switched atomically)
#   /opt/parley/previous         symlink to the release before it (rollback target)
#   /etc/parley/parley.toml      configuration (from systemd/parley.toml.example, once)
#   /etc/parley/parley.env       secrets, root:parley 0640 (generated once, never rewritten)
#   /var/lib/parley/uploads/     voice messages (audio/), images, files and thumbnails
#                                (media/, media/thumbs/): parley writes, nginx reads
#   /etc/systemd/system/parley.service, parley@.service
#   /etc/nginx/sites-available/parley.conf (+ sites-enabled symlink; written once)
#
# Idempotent: running it again never overwrites parley.toml, parley.env or an existing
# nginx site, and re-creates users and directories only when missing.
set -euo pipefail
umask 022

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<'EOF'
Usage: deploy.sh install|upgrade|rollback|status|stop [options]

Commands:
  install            set up everything and deploy a release from this checkout
  upgrade            deploy a new release; rolls back by itself when it is not ready
  rollback           switch `current` to the previous release and restart
  status             current/previous releases, service status, ready check
  stop               stop the process (systemctl stop, or the --run process)

Options:
  --binary PATH      use this prebuilt parley binary (also PARLEY_BINARY=); default:
                     cargo build --release --locked --bin parley
  --prefix DIR       put every path (/opt, /etc, /var/lib) under DIR (also DESTDIR=);
                     implies --no-systemd. The installed config, unit and nginx site
                     point at the paths under DIR.
  --no-systemd       no systemctl/useradd/chown/nginx reload: only the file layout
                     (automatic with --prefix)
  --run              without systemd: start `parley serve` directly (pid and log in
                     the state directory), stop the previous one, wait for readiness;
                     as the user running deploy.sh, so never as root without --prefix
  --database-url URL written to parley.env on first install (also PARLEY_DATABASE_URL=);
                     without it a real install creates a local MariaDB account
  --database-urls "URL,URL,..."
                     a Galera cluster instead of one database: every node's URL, same
                     database name on each, in the order Parley prefers them as writer
                     (also PARLEY_DATABASE_URLS=); written to parley.env on first
                     install as PARLEY__DATABASE__URLS (the URLs hold the password)
  --redis-sentinels "HOST:PORT,..."
                     find the Redis primary through these Sentinels (also
                     PARLEY_REDIS_SENTINELS=); written to parley.toml [redis] on
                     first install
  --redis-master-name NAME
                     the name the Sentinels monitor the primary under (also
                     PARLEY_REDIS_MASTER_NAME=; needs --redis-sentinels)
  --server-name NAME server_name of a newly installed nginx site (e.g. chat.example.org)
  --instances "P..." run parley@P.service for each port P (e.g. "30000 30002") instead
                     of parley.service; restarted one at a time (remembered)
  --timeout SECS     how long a release has to become ready (default 60;
                     PARLEY_READY_TIMEOUT=)
  --ready-url URL    the readiness URL (default http://<server.host>:<port>/api/ready)
  --keep N           releases to keep (default 5; PARLEY_KEEP_RELEASES=)
  --force            rollback even when the target lacks migrations of the current one
EOF
}

log() { printf '[deploy] %s\n' "$*" >&2; }
die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- arguments

COMMAND=${1:-}
[ $# -gt 0 ] && shift
case "$COMMAND" in
  install|upgrade|rollback|status|stop) ;;
  -h|--help|help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
  *) printf '[deploy] error: unknown command %q\n\n' "$COMMAND" >&2; usage >&2; exit 2 ;;
esac

BINARY=${PARLEY_BINARY:-}
PREFIX=${DESTDIR:-}
NO_SYSTEMD=0
RUN=0
DATABASE_URL=${PARLEY_DATABASE_URL:-}
DATABASE_URLS=${PARLEY_DATABASE_URLS:-}
REDIS_SENTINELS=${PARLEY_REDIS_SENTINELS:-}
REDIS_MASTER_NAME=${PARLEY_REDIS_MASTER_NAME:-}
SERVER_NAME=
INSTANCES=${PARLEY_INSTANCES:-}
TIMEOUT=${PARLEY_READY_TIMEOUT:-60}
READY_URL=
KEEP=${PARLEY_KEEP_RELEASES:-5}
FORCE=0

need_arg() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) need_arg "$@"; BINARY=$2; shift 2 ;;
    --binary=*) BINARY=${1#*=}; shift ;;
    --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --no-systemd) NO_SYSTEMD=1; shift ;;
    --run) RUN=1; shift ;;
    --database-url) need_arg "$@"; DATABASE_URL=$2; shift 2 ;;
    --database-url=*) DATABASE_URL=${1#*=}; shift ;;
    --database-urls) need_arg "$@"; DATABASE_URLS=$2; shift 2 ;;
    --database-urls=*) DATABASE_URLS=${1#*=}; shift ;;
    --redis-sentinels) need_arg "$@"; REDIS_SENTINELS=$2; shift 2 ;;
    --redis-sentinels=*) REDIS_SENTINELS=${1#*=}; shift ;;
    --redis-master-name) need_arg "$@"; REDIS_MASTER_NAME=$2; shift 2 ;;
    --redis-master-name=*) REDIS_MASTER_NAME=${1#*=}; shift ;;
    --server-name) need_arg "$@"; SERVER_NAME=$2; shift 2 ;;
    --server-name=*) SERVER_NAME=${1#*=}; shift ;;
    --instances) need_arg "$@"; INSTANCES=$2; shift 2 ;;
    --instances=*) INSTANCES=${1#*=}; shift ;;
    --timeout) need_arg "$@"; TIMEOUT=$2; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --ready-url) need_arg "$@"; READY_URL=$2; shift 2 ;;
    --ready-url=*) READY_URL=${1#*=}; shift ;;
    --keep) need_arg "$@"; KEEP=$2; shift 2 ;;
    --keep=*) KEEP=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
[[ "$KEEP" =~ ^[0-9]+$ ]] && [ "$KEEP" -ge 2 ] || die "--keep must be a number >= 2"
for p in $INSTANCES; do
  [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -gt 0 ] && [ "$p" -lt 65535 ] || die "--instances: bad port $p"
done
# The HA lists are checked here, before anything is written: a typo found by Parley at
# its first start would leave an install that never becomes ready.
if [ -n "$DATABASE_URLS" ]; then
  [ -z "$DATABASE_URL" ] || die "--database-url and --database-urls both given: one database, or the list of Galera nodes"
  DATABASE_URLS=${DATABASE_URLS// /}
  IFS=, read -r -a _urls <<<"$DATABASE_URLS"
  [ "${#_urls[@]}" -ge 1 ] || die "--database-urls: no URL"
  _dbs=
  for u in "${_urls[@]}"; do
    [[ "$u" =~ ^mysql://[^/]+/([A-Za-z0-9_]+)$ ]] \
      || die "--database-urls: '…${u##*@}' is not mysql://user:password@host:port/database"
    [ -z "$_dbs" ] || [ "$_dbs" = "${BASH_REMATCH[1]}" ] \
      || die "--database-urls: every node must name the same database (${_dbs} and ${BASH_REMATCH[1]})"
    _dbs=${BASH_REMATCH[1]}
  done
fi
if [ -n "$REDIS_SENTINELS" ]; then
  REDIS_SENTINELS=${REDIS_SENTINELS// /}
  IFS=, read -r -a _sentinels <<<"$REDIS_SENTINELS"
  for s in "${_sentinels[@]}"; do
    [[ "$s" =~ ^[A-Za-z0-9._-]+:[0-9]+$|^\[[0-9A-Fa-f:.]+\]:[0-9]+$ ]] \
      || die "--redis-sentinels: '$s' is not HOST:PORT"
  done
fi
if [ -n "$REDIS_MASTER_NAME" ]; then
  [ -n "$REDIS_SENTINELS" ] || die "--redis-master-name needs --redis-sentinels"
  [[ "$REDIS_MASTER_NAME" =~ ^[A-Za-z0-9._-]+$ ]] || die "--redis-master-name: '$REDIS_MASTER_NAME' is not a Sentinel master name (letters, digits, . _ -)"
fi

# ---------------------------------------------------------------- paths and mode

ROOT=${PREFIX%/}
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" = / ] && ROOT=
fi
OPT=$ROOT/opt/parley
ETC=$ROOT/etc/parley
VAR=$ROOT/var/lib/parley
UNIT_DIR=$ROOT/etc/systemd/system
NGINX_DIR=$ROOT/etc/nginx
RELEASES=$OPT/releases
PIDFILE=$VAR/parley.pid
RUNLOG=$VAR/parley.log

# SYSTEM=1: the real thing (root, systemd, user, ownership, nginx reload).
SYSTEM=1
if [ -n "$ROOT" ] || [ "$NO_SYSTEMD" = 1 ] || [ "$RUN" = 1 ]; then SYSTEM=0; fi
if [ "$RUN" = 1 ] && [ -n "$INSTANCES" ]; then die "--run starts one process; --instances needs systemd"; fi
# --run starts Parley as whoever runs this script. On a real install that is root (it
# must be, to write /opt, /etc and /var/lib), and a server open to the public must
# never run as root: one bug would own the machine. The systemd unit runs it as the
# unprivileged user parley, sandboxed. (As anyone else, the real paths are out of
# reach: --run is for trials under --prefix.)
if [ "$RUN" = 1 ] && [ -z "$ROOT" ] && [ "$(id -u)" -eq 0 ]; then
  case "$COMMAND" in
    install|upgrade|rollback)
      die "--run would start parley as root: refusing. On a real install drop --no-systemd --run and let systemd run it as the user parley (parley.service); to try Parley out, run deploy.sh as an ordinary user with --prefix DIR --run" ;;
  esac
fi

case "$COMMAND" in
  install|upgrade|rollback|stop)
    if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
      die "a real install changes /opt, /etc and /var/lib: run it as root (sudo ./deploy.sh $COMMAND), or try it out with --prefix DIR"
    fi
    if [ "$SYSTEM" = 1 ] && [ ! -d /run/systemd/system ]; then
      die "systemd is not running here (no /run/systemd/system): use --no-systemd (files only) or --no-systemd --run (start parley directly)"
    fi
    ;;
esac

# Rewrites the default paths of a shipped file to this install's paths.
substitute_paths() {
  if [ -n "$ROOT" ]; then
    sed -e "s#/opt/parley#${OPT}#g" -e "s#/var/lib/parley#${VAR}#g" -e "s#/etc/parley#${ETC}#g"
  else
    cat
  fi
}

# ---------------------------------------------------------------- small helpers

have() { command -v "$1" >/dev/null 2>&1; }

# The value of `key` in `[section]` of a TOML file (plain scalars only), or nothing.
toml_get() {
  local file=$1 section=$2 key=$3
  [ -f "$file" ] || return 0
  awk -v section="$section" -v key="$key" '
    /^[[:space:]]*\[/ { s=$0; gsub(/[][[:space:]]/, "", s); cur=s; next }
    cur == section {
      line=$0; sub(/#.*/, "", line)
      if (match(line, "^[[:space:]]*" key "[[:space:]]*=")) {
        v=substr(line, RLENGTH + 1); gsub(/^[[:space:]]+|[[:space:]]+$/, "", v); gsub(/^"|"$/, "", v)
        print v; exit
      }
    }' "$file"
}

# Sets `key = value` (value: TOML text, quoted by the caller) in `[section]` of a TOML
# stream: the first line with that key, commented or not, becomes the setting, later
# active ones are commented (TOML refuses a key twice); with no such line it goes right
# under the section header. value "#" comments the key out instead.
toml_set() {
  awk -v section="$1" -v key="$2" -v value="$3" '
    /^[[:space:]]*\[/ {
      s=$0; gsub(/[][[:space:]]/, "", s)
      if (cur == section && !done && value != "#") { print key " = " value; done=1 }
      cur=s; print; next
    }
    cur == section && match($0, "^[[:space:]]*#?[[:space:]]*" key "[[:space:]]*=") {
      commented = ($0 ~ /^[[:space:]]*#/)
      if (value == "#") { if (!commented) print "# " $0; else print; next }
      if (!done) { print key " = " value; done=1; next }
      if (!commented) { print "# " $0; next }
    }
    { print }
    END { if (cur == section && !done && value != "#") print key " = " value }'
}

# The value of NAME in parley.env, or nothing.
env_get() {
  [ -r "$ETC/parley.env" ] || return 0
  sed -n "s/^[[:space:]]*$1=//p" "$ETC/parley.env" | tail -n1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}

# The HTTP status of a GET (000 when nothing answers).
http_status() {
  local url=$1
  if have curl; then
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$url" 2>/dev/null || true
    return 0
  fi
  local rest=${url#http://} hostport path host port line
  hostport=${rest%%/*}; path=/${rest#*/}
  host=${hostport%:*}; port=${hostport##*:}
  [ "$host" = "$hostport" ] && port=80
  if exec 3<>"/dev/tcp/$host/$port" 2>/dev/null; then
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
    IFS= read -r -t 3 line <&3 || line=
    exec 3<&- 3>&-
    line=${line#HTTP/* }
    printf '%s' "${line:0:3}"
  else
    printf '000'
  fi
}

# The ports Parley listens on: the instances, or server.port as Parley resolves it
# (environment, then parley.env, then parley.toml, then 30000).
ports() {
  if [ -n "$INSTANCES" ]; then echo "$INSTANCES"; return; fi
  local p=${PARLEY__SERVER__PORT:-}
  [ -n "$p" ] || p=$(env_get PARLEY__SERVER__PORT)
  [ -n "$p" ] || p=$(toml_get "$ETC/parley.toml" server port)
  echo "${p:-30000}"
}

ready_url() {
  if [ -n "$READY_URL" ]; then echo "$READY_URL"; return; fi
  local host=${PARLEY__SERVER__HOST:-}
  [ -n "$host" ] || host=$(env_get PARLEY__SERVER__HOST)
  [ -n "$host" ] || host=$(toml_get "$ETC/parley.toml" server host)
  case "$host" in ""|0.0.0.0|"::"|"[::]") host=127.0.0.1 ;; *:*) host="[$host]" ;; esac
  echo "http://$host:$1/api/ready"
}

release_of() { # the release name a symlink points at, or nothing
  local t
  t=$(readlink "$1" 2>/dev/null) || return 0
  basename "$t"
}

# Points symlink $1 at releases/$2 atomically (a temporary link renamed over it).
point() {
  local link=$1 name=$2 tmp
  tmp="$(dirname "$link")/.$(basename "$link").tmp.$$"
  ln -sfn "releases/$name" "$tmp"
  mv -T "$tmp" "$link"
}

# ---------------------------------------------------------------- process control

units() {
  if [ -n "$INSTANCES" ]; then
    local p; for p in $INSTANCES; do printf 'parley@%s.service ' "$p"; done
  else
    printf 'parley.service'
  fi
}

direct_pid() { # the pid of the --run process when it still runs
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'parley.* serve' || return 1
  echo "$pid"
}

stop_direct() {
  local pid
  pid=$(direct_pid) || { rm -f "$PIDFILE"; return 0; }
  log "stopping parley (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "pid $pid ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$PIDFILE"
}

start_direct() {
  mkdir -p "$VAR"
  log "starting $OPT/current/parley (log: $RUNLOG)"
  (
    set -a
    # shellcheck disable=SC1091
    . "$ETC/parley.env"
    set +a
    export PARLEY__LOG__FORMAT=${PARLEY__LOG__FORMAT:-json}
    cd "$VAR"
    # setsid: the server outlives this script and its terminal.
    # 9>&-: the server must not keep deploy.sh's lock.
    exec setsid "$OPT/current/parley" --config "$ETC/parley.toml" serve </dev/null >>"$RUNLOG" 2>&1 9>&-
  ) &
  echo $! >"$PIDFILE"
}

# Waits until every port answers 200 on /api/ready; 1 on timeout or a dead process.
wait_ready() {
  local deadline=$((SECONDS + TIMEOUT)) port url status
  for port in $(ports); do
    url=$(ready_url "$port")
    while :; do
      status=$(http_status "$url")
      [ "$status" = 200 ] && { log "ready: $url"; break; }
      if [ "$RUN" = 1 ] && ! direct_pid >/dev/null; then
        log "parley exited before becoming ready (last lines of $RUNLOG):"
        tail -n 15 "$RUNLOG" >&2 || true
        return 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "not ready within ${TIMEOUT}s: $url answers $status"
        return 1
      fi
      sleep 0.5
    done
  done
}

# Restarts the service on the release `current` points at and waits until it is ready.
# 0: ready; 1: not ready; 2: nothing to restart (no systemd, no --run).
restart_and_wait() {
  if [ "$SYSTEM" = 1 ]; then
    systemctl daemon-reload
    local u ok=0
    for u in $(units); do
      log "restarting $u"
      # Type=notify: returns once Parley sent READY=1 (or failed / timed out).
      if ! systemctl restart "$u"; then
        log "$u did not start:"; journalctl -u "$u" -n 20 --no-pager >&2 || true
        ok=1; break
      fi
      # Rolling: each instance is ready before the next one goes down.
      local saved=$INSTANCES
      if [ -n "$INSTANCES" ]; then INSTANCES=${u#parley@}; INSTANCES=${INSTANCES%.service}; fi
      wait_ready || ok=1
      INSTANCES=$saved
      if [ "$ok" != 0 ]; then break; fi
    done
    return "$ok"
  elif [ "$RUN" = 1 ]; then
    stop_direct
    start_direct
    wait_ready || return 1
  else
    log "no systemd and no --run: not starting anything (start $OPT/current/parley yourself)"
    return 2
  fi
}

# ---------------------------------------------------------------- steps

ensure_user_and_dirs() {
  local web_group=www-data
  if [ "$SYSTEM" = 1 ]; then
    if ! getent group parley >/dev/null; then groupadd --system parley; fi
    if ! getent passwd parley >/dev/null; then
      log "creating the system user parley"
      useradd --system --gid parley --home-dir /var/lib/parley --no-create-home \
        --shell /usr/sbin/nologin --comment "Parley messenger" parley
    fi
    # nginx's worker group reads the uploads (X-Accel-Redirect).
    if [ -f /etc/nginx/nginx.conf ]; then
      local u
      u=$(awk '$1 == "user" { gsub(/;/, ""); print ($3 != "" ? $3 : $2); exit }' /etc/nginx/nginx.conf)
      [ -n "$u" ] && web_group=$u
    fi
    getent group "$web_group" >/dev/null || { log "no group $web_group: uploads stay parley-only"; web_group=parley; }
  fi
  install -d -m 0755 "$OPT" "$RELEASES" "$VAR" "$UNIT_DIR"
  install -d -m 0755 "$ETC"
  if [ "$SYSTEM" = 1 ]; then
    # setgid: files Parley creates (umask 0027) belong to nginx's group, read-only.
    install -d -o parley -g "$web_group" -m 2750 "$VAR/uploads" "$VAR/uploads/audio" \
      "$VAR/uploads/media" "$VAR/uploads/media/thumbs"
  else
    install -d -m 0755 "$VAR/uploads" "$VAR/uploads/audio" "$VAR/uploads/media" "$VAR/uploads/media/thumbs"
  fi
}

build_binary() {
  if [ -n "$BINARY" ]; then
    [ -f "$BINARY" ] && [ -x "$BINARY" ] || die "--binary $BINARY is not an executable file"
    BINARY=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")
    return
  fi
  log "building the release binary (cargo build --release --locked --bin parley)"
  if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    # Build as the user who ran sudo: their toolchain, and no root-owned target/.
    sudo -u "$SUDO_USER" -H sh -c 'cd "$1" && PATH="$HOME/.cargo/bin:$PATH" cargo build --release --locked --bin parley' sh "$SCRIPT_DIR" \
      || die "the build failed"
  else
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
    have cargo || die "cargo not found: install Rust (https://rustup.rs) or pass --binary PATH"
    (cd "$SCRIPT_DIR" && cargo build --release --locked --bin parley) || die "the build failed"
  fi
  BINARY=$SCRIPT_DIR/target/release/parley
}

# Makes releases/<id> from this checkout and prints <id>.
make_release() {
  local id sha n=1
  sha=$(git -C "$SCRIPT_DIR" rev-parse --short=12 HEAD 2>/dev/null || true)
  id=$(date -u +%Y%m%dT%H%M%SZ)${sha:+-$sha}
  local base=$id
  while [ -e "$RELEASES/$id" ]; do id=$base.$n; n=$((n + 1)); done
  local tmp=$RELEASES/.tmp-$id
  rm -rf "$tmp"
  install -d -m 0755 "$tmp" "$tmp/systemd" "$tmp/systemd/nginx"
  install -m 0755 "$BINARY" "$tmp/parley"
  cp -R "$SCRIPT_DIR/static" "$tmp/static"
  cp -R "$SCRIPT_DIR/migrations" "$tmp/migrations"
  install -m 0644 "$SCRIPT_DIR/systemd/parley.toml.example" "$SCRIPT_DIR/systemd/parley.service" \
    "$SCRIPT_DIR/systemd/parley@.service" "$tmp/systemd/"
  install -m 0644 "$SCRIPT_DIR/systemd/nginx/parley.conf" "$tmp/systemd/nginx/"
  [ -f "$SCRIPT_DIR/systemd/coturn.conf.example" ] && install -m 0644 "$SCRIPT_DIR/systemd/coturn.conf.example" "$tmp/systemd/"
  [ -f "$SCRIPT_DIR/README.md" ] && install -m 0644 "$SCRIPT_DIR/README.md" "$tmp/"
  chmod -R u=rwX,go=rX "$tmp/static" "$tmp/migrations"
  {
    echo "release=$id"
    echo "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git=${sha:-unknown}"
    echo "binary=$BINARY"
    echo "sha256=$(sha256sum "$tmp/parley" | cut -d' ' -f1)"
  } >"$tmp/RELEASE"
  mv -T "$tmp" "$RELEASES/$id"
  echo "$id"
}

random_hex() { head -c "$1" /dev/urandom | od -An -vtx1 | tr -d ' \n'; }

# Creates the MariaDB account `parley` on the local server; prints the URL or nothing.
provision_database() {
  [ "$SYSTEM" = 1 ] || return 0
  have mysql || { log "no mysql client: set PARLEY__DATABASE__URL in $ETC/parley.env"; return 0; }
  mysql -uroot -e 'SELECT 1' >/dev/null 2>&1 || { log "cannot reach MariaDB as root: set PARLEY__DATABASE__URL in $ETC/parley.env"; return 0; }
  local pw; pw=$(random_hex 24)
  log "creating the MariaDB account parley (database parley)"
  mysql -uroot <<SQL
CREATE USER IF NOT EXISTS 'parley'@'localhost' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'parley'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'parley'@'localhost' IDENTIFIED BY '$pw';
ALTER USER 'parley'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`parley\`.* TO 'parley'@'localhost';
GRANT ALL PRIVILEGES ON \`parley\`.* TO 'parley'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
  echo "mysql://parley:$pw@127.0.0.1:3306/parley"
}

install_config() {
  if [ ! -f "$ETC/parley.toml" ]; then
    log "writing $ETC/parley.toml (from systemd/parley.toml.example)"
    # The example sets auth.registration = "invite": a server on the internet does not
    # take sign-ups from anyone (README, "Operating a community").
    # With the nginx site (it has the matching internal locations), nginx sends the
    # uploaded bytes; without nginx, Parley sends them itself.
    local accel='s|^# x_accel_prefix = "/_parley_audio/" .*|x_accel_prefix = "/_parley_audio/"   # nginx sends the audio bytes (systemd/nginx/parley.conf)|'
    local accel_media='s|^# x_accel_media_prefix = "/_parley_media/" .*|x_accel_media_prefix = "/_parley_media/"   # nginx sends image, file and thumbnail bytes|'
    if [ "$SYSTEM" = 1 ] && ! have nginx; then accel='p;d'; accel_media='p;d'; fi
    substitute_paths <"$SCRIPT_DIR/systemd/parley.toml.example" | sed -e "$accel" -e "$accel_media" | ha_toml >"$ETC/parley.toml.tmp"
    chmod 0644 "$ETC/parley.toml.tmp"
    mv -T "$ETC/parley.toml.tmp" "$ETC/parley.toml"
  else
    log "keeping $ETC/parley.toml"
    if [ -n "$REDIS_SENTINELS" ]; then
      log "note: --redis-sentinels ignored, parley.toml exists: set sentinels = \"$REDIS_SENTINELS\"${REDIS_MASTER_NAME:+ and master_name = \"$REDIS_MASTER_NAME\"} under [redis] there (and remove url)"
    fi
  fi

  if [ ! -f "$ETC/parley.env" ]; then
    local url=$DATABASE_URL
    if [ -z "$url" ] && [ -z "$DATABASE_URLS" ] && grep -q 'CHANGE-ME' "$ETC/parley.toml"; then url=$(provision_database); fi
    log "writing $ETC/parley.env with a new JWT secret"
    (
      umask 077
      {
        echo "# Parley secrets (systemd EnvironmentFile), made by deploy.sh $(date -u +%Y-%m-%d)."
        echo "# Values here win over parley.toml. Never commit or share this file."
        echo "PARLEY__AUTH__JWT_SECRET=$(random_hex 32)"
        if [ -n "$DATABASE_URLS" ]; then
          echo "# The Galera nodes, in the order Parley prefers them as the single writer."
          echo "PARLEY__DATABASE__URLS=$DATABASE_URLS"
        elif [ -n "$url" ]; then echo "PARLEY__DATABASE__URL=$url"; else echo "# PARLEY__DATABASE__URL=mysql://parley:PASSWORD@127.0.0.1:3306/parley"; fi
        echo "# PARLEY__CALLS__TURN_SECRET=the coturn static-auth-secret"
        vapid_line
      } >"$ETC/.parley.env.tmp"
    )
    if [ "$SYSTEM" = 1 ]; then chown root:parley "$ETC/.parley.env.tmp"; fi
    chmod 0640 "$ETC/.parley.env.tmp"
    mv -T "$ETC/.parley.env.tmp" "$ETC/parley.env"
  else
    log "keeping $ETC/parley.env"
    [ -z "$DATABASE_URL" ] || log "note: --database-url ignored, parley.env exists (edit it to change the URL)"
    [ -z "$DATABASE_URLS" ] || log "note: --database-urls ignored, parley.env exists: set PARLEY__DATABASE__URLS=… there (and remove PARLEY__DATABASE__URL)"
    # An install from before Web Push: add a key once (appended, nothing rewritten).
    if [ -z "$(env_get PARLEY__PUSH__VAPID_PRIVATE_KEY)" ]; then
      log "adding a Web Push (VAPID) key to $ETC/parley.env"
      vapid_line >>"$ETC/parley.env"
    fi
  fi
}

# The HA settings of a new parley.toml (a filter): with --database-urls the example's
# one-node `database.url` is commented out (the list in parley.env is the database);
# with --redis-sentinels the Sentinel list and master name go under [redis] and
# `redis.url` is commented out (the Sentinels name the primary).
ha_toml() {
  if [ -z "$DATABASE_URLS" ] && [ -z "$REDIS_SENTINELS" ]; then cat; return; fi
  local f; f=$(cat)
  if [ -n "$DATABASE_URLS" ]; then f=$(printf '%s\n' "$f" | toml_set database url '#'); fi
  if [ -n "$REDIS_SENTINELS" ]; then
    f=$(printf '%s\n' "$f" | toml_set redis url '#' | toml_set redis sentinels "\"$REDIS_SENTINELS\"")
    if [ -n "$REDIS_MASTER_NAME" ]; then f=$(printf '%s\n' "$f" | toml_set redis master_name "\"$REDIS_MASTER_NAME\""); fi
  fi
  printf '%s\n' "$f"
}

# A new Web Push (VAPID) private key as a parley.env line (`parley admin push
# generate-keys`, which needs no settings); nothing when the binary cannot make one.
vapid_line() {
  local key
  key=$("$BINARY" admin push generate-keys 2>/dev/null | sed -n 's/^PARLEY__PUSH__VAPID_PRIVATE_KEY=//p')
  if [ -n "$key" ]; then
    echo "# Web Push: a new key ends every browser's subscription; keep it."
    echo "PARLEY__PUSH__VAPID_PRIVATE_KEY=$key"
  fi
}

install_units() {
  local f
  for f in parley.service parley@.service; do
    substitute_paths <"$SCRIPT_DIR/systemd/$f" >"$UNIT_DIR/.$f.tmp"
    chmod 0644 "$UNIT_DIR/.$f.tmp"
    mv -T "$UNIT_DIR/.$f.tmp" "$UNIT_DIR/$f"
  done
}

install_nginx_site() {
  if [ "$SYSTEM" = 1 ] && ! have nginx; then
    log "nginx is not installed (apt-get install nginx): skipping the site"
    return 0
  fi
  install -d -m 0755 "$NGINX_DIR/sites-available" "$NGINX_DIR/sites-enabled"
  local site=$NGINX_DIR/sites-available/parley.conf new
  new=$(substitute_paths <"$SCRIPT_DIR/systemd/nginx/parley.conf")
  if [ -n "$SERVER_NAME" ]; then new=$(printf '%s\n' "$new" | sed "s|^    server_name _;|    server_name $SERVER_NAME;|"); fi
  if [ ! -f "$site" ]; then
    log "writing $site"
    printf '%s\n' "$new" >"$site"
  elif ! printf '%s\n' "$new" | cmp -s - "$site"; then
    printf '%s\n' "$new" >"$site.dist"
    log "keeping your $site; the shipped version is in $site.dist (diff them)"
  fi
  ln -sfn ../sites-available/parley.conf "$NGINX_DIR/sites-enabled/parley.conf"
  if [ "$SYSTEM" = 1 ]; then
    # Debian's stock site is the default server on :80 and would answer instead.
    if [ "$COMMAND" = install ] && [ -L "$NGINX_DIR/sites-enabled/default" ] \
       && [ "$(readlink -f "$NGINX_DIR/sites-enabled/default")" = "$NGINX_DIR/sites-available/default" ]; then
      log "disabling nginx's stock default site (rm $NGINX_DIR/sites-enabled/default)"
      rm -f "$NGINX_DIR/sites-enabled/default"
    fi
    nginx -t || die "nginx -t failed: fix $site (the release is installed but nginx was not reloaded)"
    if systemctl is-active --quiet nginx; then systemctl reload nginx; else systemctl enable --now nginx; fi
  fi
}

run_migrations() { # $1 = release dir
  log "applying migrations with $1/parley"
  (
    set -a
    # shellcheck disable=SC1091
    . "$ETC/parley.env"
    set +a
    cd "$VAR"
    "$1/parley" --config "$ETC/parley.toml" migrate >&2
  )
}

prune_releases() {
  local cur prev n=0 d name
  cur=$(release_of "$OPT/current"); prev=$(release_of "$OPT/previous")
  # Newest first; current and previous are always kept.
  while IFS= read -r d; do
    name=$(basename "$d")
    n=$((n + 1))
    if [ "$n" -gt "$KEEP" ] && [ "$name" != "$cur" ] && [ "$name" != "$prev" ]; then
      log "removing old release $name"
      rm -rf "${RELEASES:?}/$name"
    fi
  done < <(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2-)
}

remember_instances() {
  if [ -n "$INSTANCES" ]; then echo "$INSTANCES" >"$OPT/instances"
  elif [ -f "$OPT/instances" ]; then INSTANCES=$(cat "$OPT/instances"); fi
}

enable_units() {
  [ "$SYSTEM" = 1 ] || return 0
  systemctl daemon-reload
  if [ -n "$INSTANCES" ]; then
    if systemctl is-enabled --quiet parley.service 2>/dev/null; then
      log "switching from parley.service to $(units)"
      systemctl disable --now parley.service
    fi
  fi
  # shellcheck disable=SC2046
  systemctl enable --quiet $(units)
}

migrations_of() { find "$RELEASES/$1/migrations" -name '*.sql' -printf '%f\n' 2>/dev/null | sort; }

# ---------------------------------------------------------------- commands

deploy() { # install / upgrade
  local old old_prev id
  if [ "$COMMAND" = upgrade ] && [ -z "$(release_of "$OPT/current")" ]; then
    die "nothing installed under $OPT (no current release): run install first"
  fi
  build_binary
  ensure_user_and_dirs
  exec 9>"$OPT/.deploy.lock"
  flock -n 9 || die "another deploy.sh runs on $OPT"
  old=$(release_of "$OPT/current"); old_prev=$(release_of "$OPT/previous")
  if [ "$COMMAND" = install ] && [ -n "$old" ]; then log "already installed (current: $old): deploying a new release"; fi
  remember_instances
  install_config
  id=$(make_release)
  log "release $id in $RELEASES/$id"
  if ! run_migrations "$RELEASES/$id"; then
    rm -rf "${RELEASES:?}/$id"
    die "migrations failed with release $id (removed); ${old:+still on $old, }nothing was switched"
  fi
  install_units
  install_nginx_site
  enable_units

  point "$OPT/current" "$id"
  if [ -n "$old" ]; then point "$OPT/previous" "$old"; fi
  log "current -> $id${old:+ (previous -> $old)}"

  local rc=0
  restart_and_wait || rc=$?
  if [ "$rc" = 1 ]; then
    if [ -z "$old" ]; then
      die "release $id did not become ready and there is no earlier release to go back to (see the log above)"
    fi
    log "release $id did not become ready: rolling back to $old"
    point "$OPT/current" "$old"
    if [ -n "$old_prev" ]; then point "$OPT/previous" "$old_prev"; else rm -f "$OPT/previous"; fi
    local rrc=0
    restart_and_wait || rrc=$?
    rm -rf "${RELEASES:?}/$id"
    if [ "$rrc" = 1 ]; then
      die "ROLLED BACK to $old, but it is not ready either: check the database and the logs"
    fi
    die "upgrade FAILED: release $id was not ready; ROLLED BACK to $old (removed $id)"
  fi
  prune_releases
  log "done: $COMMAND of release $id$([ "$rc" = 0 ] && echo ', ready')"
}

rollback() {
  local cur prev
  [ -d "$OPT" ] || die "nothing installed under $OPT"
  exec 9>"$OPT/.deploy.lock"
  flock -n 9 || die "another deploy.sh runs on $OPT"
  remember_instances
  cur=$(release_of "$OPT/current"); prev=$(release_of "$OPT/previous")
  [ -n "$cur" ] || die "no current release under $OPT"
  [ -n "$prev" ] && [ -d "$RELEASES/$prev" ] || die "no previous release to roll back to (current: $cur)"
  local missing
  missing=$(comm -23 <(migrations_of "$cur") <(migrations_of "$prev") | tr '\n' ' ')
  if [ -n "$missing" ] && [ "$FORCE" = 0 ]; then
    die "release $prev lacks migrations that $cur applied ($missing): it refuses to start on this database. Restore a database backup first, then use --force"
  fi
  point "$OPT/current" "$prev"
  point "$OPT/previous" "$cur"
  log "current -> $prev (previous -> $cur)"
  local rc=0
  restart_and_wait || rc=$?
  if [ "$rc" = 1 ]; then
    log "release $prev did not become ready: back to $cur"
    point "$OPT/current" "$cur"
    point "$OPT/previous" "$prev"
    restart_and_wait || true
    die "rollback FAILED: $prev was not ready; still on $cur"
  fi
  log "rolled back to $prev"
}

status() {
  local cur prev d name
  remember_instances
  cur=$(release_of "$OPT/current"); prev=$(release_of "$OPT/previous")
  echo "Parley under ${ROOT:-/}"
  echo "current:  ${cur:-none}"
  echo "previous: ${prev:-none}"
  echo "releases:"
  if [ -d "$RELEASES" ]; then
    while IFS= read -r d; do
      name=$(basename "$d")
      local mark="  "
      [ "$name" = "$cur" ] && mark="* "
      echo "  $mark$name  $(sed -n 's/^created=//p' "$d/RELEASE" 2>/dev/null)  sha256:$(sed -n 's/^sha256=//p' "$d/RELEASE" 2>/dev/null | cut -c1-12)"
    done < <(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %p\n' | sort -rn | cut -d' ' -f2-)
  fi
  if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && have systemctl; then
    # shellcheck disable=SC2046
    systemctl status --no-pager --lines=5 $(units) || true
  elif pid=$(direct_pid); then
    echo "process:  pid $pid ($(readlink "/proc/$pid/exe" 2>/dev/null))"
  else
    echo "process:  not running (no systemd; see --run)"
  fi
  local all=0 port url code
  for port in $(ports); do
    url=$(ready_url "$port")
    code=$(http_status "$url")
    if [ "$code" = 200 ]; then echo "ready:    yes ($url)"; else echo "ready:    NO ($url answers $code)"; all=1; fi
  done
  return "$all"
}

case "$COMMAND" in
  install|upgrade) deploy ;;
  rollback) rollback ;;
  status) status ;;
  stop)
    remember_instances
    if [ "$SYSTEM" = 1 ]; then
      # shellcheck disable=SC2046
      systemctl stop $(units)
    else
      stop_direct
    fi
    ;;
esac
