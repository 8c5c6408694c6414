#!/usr/bin/env bash
# Start a throw-away PostgreSQL 15 server for the feedback store tests and print its URL.
#
#   usage: tests/feedback/start_postgres.sh DATA_DIR [PORT]
#   then:  export ALIGNKIT_TEST_PG_URL=$(tests/feedback/start_postgres.sh /tmp/alignkit-pg)
#   stop:  runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D DATA_DIR stop   (or pg_ctl as yourself)
#
# Debian's server binaries live in /usr/lib/postgresql/15/bin (apt-get install postgresql-15).
# PostgreSQL refuses to run as root, so as root the server runs as the "postgres" user (created
# by the Debian package). It listens on 127.0.0.1 only, with trust authentication: for tests only.
set -euo pipefail

DATA_DIR=${1:?usage: start_postgres.sh DATA_DIR [PORT]}
PORT=${2:-54329}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$BIN/initdb" ] || BIN=$(dirname "$(command -v initdb)")

if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    AS=(runuser -u postgres --)
    mkdir -p "$DATA_DIR"
    chown postgres: "$DATA_DIR"
    runuser -u postgres -- test -w "$DATA_DIR" \
        || { echo "the postgres user cannot reach $DATA_DIR (a parent folder is private); use e.g. /tmp/alignkit-pg" >&2; exit 1; }
    DB_USER=postgres
else
    AS=()
    mkdir -p "$DATA_DIR"
    DB_USER=$(id -un)
fi
SOCK_DIR="$DATA_DIR/socket"

if [ ! -f "$DATA_DIR/PG_VERSION" ]; then
    "${AS[@]}" "$BIN/initdb" -D "$DATA_DIR" -U "$DB_USER" --auth=trust --encoding=UTF8 >"$DATA_DIR.initdb.log" 2>&1 \
        || { cat "$DATA_DIR.initdb.log" >&2; exit 1; }
fi
"${AS[@]}" mkdir -p "$SOCK_DIR"
if ! "${AS[@]}" "$BIN/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1; then
    "${AS[@]}" "$BIN/pg_ctl" -D "$DATA_DIR" -l "$DATA_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK_DIR -c fsync=off -c max_connections=200" start >&2 \
        || { cat "$DATA_DIR/server.log" >&2; exit 1; }
fi
echo "postgresql+psycopg://$DB_USER@127.0.0.1:$PORT/postgres"
