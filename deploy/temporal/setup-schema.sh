#!/bin/sh
# Creates Temporal's two databases and brings their schema to the version
# this admin-tools image ships. Idempotent: run on every `up`, it only
# applies missing schema versions (also after a Temporal upgrade).
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${POSTGRES_PWD:?}"
DB_PORT=${DB_PORT:-5432}
export SQL_PASSWORD="$POSTGRES_PWD"
SCHEMA=/etc/temporal/schema/postgresql/v12

until nc -z -w 10 "$POSTGRES_SEEDS" "$DB_PORT"; do
	echo "waiting for PostgreSQL at $POSTGRES_SEEDS:$DB_PORT"
	sleep 2
done

sql() {
	temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}
for db in temporal:temporal temporal_visibility:visibility; do
	name=${db%%:*}
	dir=${db#*:}
	# create fails when the database exists: that is the rerun case.
	sql --db "$name" create || echo "database $name exists"
	sql --db "$name" setup-schema -v 0.0
	sql --db "$name" update-schema -d "$SCHEMA/$dir/versioned"
done
echo "Temporal schema is up to date"
