#!/bin/sh
# Runs once, when the postgres container initialises an empty data
# directory: creates the node store's role and database for metalpower.
# Credentials come from the postgres env file (NODESTORE_DB_*).
set -eu
: "${NODESTORE_DB_USER:?set NODESTORE_DB_USER in the postgres env file}"
: "${NODESTORE_DB_PASSWORD:?set NODESTORE_DB_PASSWORD in the postgres env file}"
: "${NODESTORE_DB_NAME:?set NODESTORE_DB_NAME in the postgres env file}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
	-v user="$NODESTORE_DB_USER" -v password="$NODESTORE_DB_PASSWORD" -v db="$NODESTORE_DB_NAME" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
