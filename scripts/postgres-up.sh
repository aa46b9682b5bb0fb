#!/usr/bin/env bash
# Start a local PostgreSQL server for the worker tests (tests/e2e/test_workers.py).
#
# Installs the distribution's postgresql package when no server is installed, starts
# the cluster when it is not running, and creates the role and database the tests use:
#   postgresql://bitnas:bitnas@127.0.0.1:${BITNAS_PG_PORT:-5432}/bitnas_test
# The password is a local test credential, not a secret. Needs root (apt-get, and
# switching to the postgres user); without it, or on any failure, this prints one line
# saying why and exits 0, and the PostgreSQL test skips with that reason.
set -uo pipefail

say() { echo "postgres-up: $*"; }
give_up() { say "$* (the PostgreSQL worker test will skip)"; exit 0; }

ROLE=bitnas PASSWORD=bitnas DB=bitnas_test PORT=${BITNAS_PG_PORT:-5432}

if [ "$(id -u)" != 0 ]; then
    give_up "not root, so cannot install or start a server; set BITNAS_TEST_POSTGRES to a URL of a server you run"
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    command -v apt-get >/dev/null || give_up "no PostgreSQL server and no apt-get to install one"
    say "installing the distribution's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } ||
        give_up "apt-get install postgresql failed"
fi

command -v pg_lsclusters >/dev/null || give_up "postgresql-common (pg_lsclusters) is missing"
# the newest version whose server is installed (a newer client alone may sit beside it)
VERSION=$(for d in /usr/lib/postgresql/*/bin/postgres; do basename "$(dirname "$(dirname "$d")")"; done | sort -n | tail -1)
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$VERSION" main --port "$PORT" >/dev/null || give_up "pg_createcluster failed"
fi
CLUSTER_PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    pg_ctlcluster "$VERSION" main start || give_up "could not start cluster $VERSION/main"
fi

psql_admin() { runuser -u postgres -- psql -p "$CLUSTER_PORT" -qtAX -v ON_ERROR_STOP=1 "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'" || give_up "could not create role $ROLE"
else  # an older role may have another password
    psql_admin -c "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'" || give_up "could not update role $ROLE"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE $DB OWNER $ROLE" || give_up "could not create database $DB"
fi
say "PostgreSQL $VERSION is running on 127.0.0.1:$CLUSTER_PORT (role $ROLE, database $DB)"
if [ "$CLUSTER_PORT" != "$PORT" ]; then
    say "the cluster listens on $CLUSTER_PORT, not $PORT: run the tests with BITNAS_PG_PORT=$CLUSTER_PORT"
fi
