#!/bin/bash
# Runs once when the primary's data directory is created: lets the standby
# stream WAL from it. Synchronous replication itself is set on the command
# line of docker-compose.cluster.yml.
set -euo pipefail
echo "host replication all all trust" >>"$PGDATA/pg_hba.conf"
