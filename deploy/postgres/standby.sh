#!/bin/bash
# The standby of docker-compose.cluster.yml: on first start it clones the
# primary (pg_basebackup -R writes primary_conninfo and standby.signal), then
# runs as a hot standby that the primary waits for (synchronous commit).
# Promote it with `pg_ctl promote` (or `SELECT pg_promote()`) when the
# primary is lost; procinst finds it through target_session_attrs=read-write.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_basebackup -h postgres-primary -U postgres -D "$PGDATA" -R -X stream; do
    echo "waiting for the primary" >&2
    sleep 2
  done
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c synchronous_standby_names='*'
