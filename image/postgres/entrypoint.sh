#!/bin/bash
# First start: initdb (password auth over TCP, trust on the socket) and the databases of
# POSTGRES_DATABASES, with the server listening on its socket only. Then the server in the
# foreground, logical decoding on.
set -euo pipefail
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD: the password of user postgres over TCP}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    # initdb allows loopback only; logical replication connections match "all".
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    for db in ${POSTGRES_DATABASES:-}; do
        echo 'CREATE DATABASE :"db"' | psql -q -v ON_ERROR_STOP=1 -v db="$db" -h /var/run/postgresql -U postgres postgres
        echo "postgres-entrypoint: created database $db"
    done
    pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
fi
exec postgres -D "$PGDATA" -p "$PGPORT" -c listen_addresses="${PG_LISTEN:-*}" \
    -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10
