#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests (crates/zodb-pg and the RelStorage
# interop), in a temporary directory, listening on a unix socket there and on a
# free TCP port of 127.0.0.1 only.
#
#   tools/pg-cluster.sh start DIR [--durable]
#                                   initdb into DIR (created, given to the
#                                   `postgres` user when run as root), start the
#                                   server, print the URL on the last line;
#                                   --durable keeps PostgreSQL's fsync and
#                                   synchronous commit (for benchmarks), which
#                                   a test cluster turns off
#   tools/pg-cluster.sh standby PRIMARY_URL DIR
#                                   a hot standby of the cluster at PRIMARY_URL
#                                   (a postgresql://user@host:port/db URL):
#                                   pg_basebackup into DIR, streaming
#                                   replication, read-only queries allowed;
#                                   prints its URL on the last line
#   tools/pg-cluster.sh stop DIR    stop it (fast) and remove DIR
#
# Debian's `postgresql` package is installed with apt-get when no initdb is
# found. As root the server runs as the `postgres` user (PostgreSQL refuses to
# run as root). Authentication is `trust`: the cluster is reachable only from
# this machine and lives as long as one test run.
set -euo pipefail

bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb ]] && { echo "$d"; return; }
    done
    command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
    return 1
}

install_postgres() {
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    echo "pg-cluster.sh: installing postgresql with apt-get" >&2
    local install=(install -y -q --no-install-recommends postgresql)
    { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${install[@]}" ||
        { "${sudo[@]}" apt-get update -q && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${install[@]}"; }; } >&2
}

# Runs a PostgreSQL binary as the cluster's owner.
as_owner() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd=${1:-}
dir=${2:-}
durable=0
[[ ${3:-} == --durable ]] && durable=1
[[ -n $cmd && -n $dir ]] || { echo "usage: $0 start|stop DIR, or standby PRIMARY_URL DIR" >&2; exit 2; }

case $cmd in
start)
    bin=$(bindir) || { install_postgres; bin=$(bindir); }
    mkdir -p "$dir"
    ((EUID == 0)) && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
    opts+=" -c max_connections=200"
    # fsync off: a test cluster is thrown away, never recovered.
    ((durable)) || opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
standby)
    primary=${3:?usage: $0 standby PRIMARY_URL DIR}
    # Arguments: standby DIR is $2 in the other commands; here PRIMARY_URL comes
    # first, so swap.
    dir=$3 primary=$2
    bin=$(bindir) || { install_postgres; bin=$(bindir); }
    hostport=${primary#*://}
    hostport=${hostport#*@}
    hostport=${hostport%%/*}
    host=${hostport%%:*} port_primary=${hostport##*:}
    mkdir -p "$dir"
    ((EUID == 0)) && chown postgres: "$dir"
    as_owner "$bin/pg_basebackup" -h "$host" -p "$port_primary" -U postgres -D "$dir/data" -R \
        -X stream --no-sync --checkpoint=fast >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; exit 1; }
    port=$(free_port)
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
    opts+=" -c max_connections=200 -c hot_standby=on -c fsync=off"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    if [[ -d $dir/data ]]; then
        bin=$(bindir)
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
