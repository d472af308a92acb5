# shellcheck shell=bash
# Throwaway PostgreSQL clusters from the system binaries, for ops/test and ops/dev.
#
# Postgres refuses to run as root, so when these scripts run as root the cluster runs as the
# `postgres` user (created by Debian's package; we create a system user if it is missing), in a
# directory that user can reach.

# Prints the directory holding initdb/pg_ctl/postgres, preferring PATH, then the newest
# /usr/lib/postgresql/<version>/bin.
pg_find_bindir() {
  local initdb
  if initdb=$(command -v initdb 2>/dev/null) && [ -x "$(dirname "$(readlink -f "$initdb")")/postgres" ]; then
    dirname "$(readlink -f "$initdb")"
    return 0
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
    echo "$dir"
    return 0
  fi
  return 1
}

# Sets PG_BIN, installing Debian's postgresql package when no server binaries exist.
pg_ensure_installed() {
  if PG_BIN=$(pg_find_bindir); then
    return 0
  fi
  echo "ops: no PostgreSQL server binaries found; installing the 'postgresql' package with apt-get" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "ops: need root or sudo to install PostgreSQL" >&2; return 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >&2
  PG_BIN=$(pg_find_bindir) || { echo "ops: PostgreSQL installed but its binaries were not found" >&2; return 1; }
}

# Sets PG_RUN_AS: empty when we are not root, else the unprivileged user that runs clusters.
pg_choose_user() {
  PG_RUN_AS=""
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id -u postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
  PG_RUN_AS=postgres
}

# Runs a command as the cluster user.
pg_as() {
  if [ -n "${PG_RUN_AS:-}" ]; then
    runuser -u "$PG_RUN_AS" -- "$@"
  else
    "$@"
  fi
}

# True when the cluster user can enter directory $1 (every parent must be searchable).
pg_can_reach() {
  pg_as test -x "$1" -a -w "$1" 2>/dev/null
}

# Makes directory $1 owned by the cluster user, mode 0700.
pg_own_dir() {
  mkdir -p "$1"
  [ -z "${PG_RUN_AS:-}" ] || chown "$PG_RUN_AS" "$1"
  chmod 0700 "$1"
}

# Prints a TCP port on 127.0.0.1 that nothing is listening on.
pg_free_port() {
  local port _
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "ops: found no free port" >&2
  return 1
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pg_init DATADIR [PASSWORD]: creates a cluster whose superuser is `postgres`. Without a password,
# TCP connections are trusted (test clusters); with one, they need it (dev clusters).
pg_init() {
  local data=$1 password=${2:-}
  pg_own_dir "$data"
  local auth=(--auth=trust)
  if [ -n "$password" ]; then
    local pwfile="$data.pw"
    (umask 077 && printf '%s\n' "$password" >"$pwfile")
    [ -z "${PG_RUN_AS:-}" ] || chown "$PG_RUN_AS" "$pwfile"
    auth=(--auth-local=trust --auth-host=scram-sha-256 "--pwfile=$pwfile")
  fi
  pg_as "$PG_BIN/initdb" -D "$data" -U postgres -E UTF8 --no-sync "${auth[@]}" >/dev/null
  rm -f "$data.pw"
}

# pg_start DATADIR PORT [extra postgres -c settings...]: starts the cluster on 127.0.0.1:PORT with
# its socket in DATADIR, and waits until it accepts connections.
pg_start() {
  local data=$1 port=$2
  shift 2
  local opts="-p $port -k $data -c listen_addresses=127.0.0.1"
  local setting
  for setting in "$@"; do
    opts="$opts -c $setting"
  done
  if ! pg_as "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -o "$opts" start >/dev/null; then
    echo "ops: PostgreSQL in $data failed to start; its log says:" >&2
    tail -n 20 "$data/server.log" >&2 || true
    return 1
  fi
}

# pg_stop DATADIR: fast shutdown; quiet when it is not running.
pg_stop() {
  [ -f "$1/postmaster.pid" ] || return 0
  pg_as "$PG_BIN/pg_ctl" -D "$1" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# pg_psql DATADIR PORT SQL [DATABASE]: runs SQL as the superuser over the cluster's socket, in
# DATABASE (default `postgres`).
pg_psql() {
  pg_as "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$2" -U postgres -d "${4:-postgres}" -c "$3"
}
