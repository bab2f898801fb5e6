#!/usr/bin/env bash
# What `make test` needs from the machine: the Debian packages the tests use, and the two
# servers every test machine runs, Mosquitto on 127.0.0.1:1883 and PostgreSQL on 5432
# (the other servers are private ones the tests start from these packages' binaries).
# As root it installs what is missing and starts a server that does not answer; as any
# other user it names what is missing and stops. A server that stays down is a failure:
# the tests never skip one.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PG_DSN=${MG_TEST_PG_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}

need=()
# Debian ships venv's pip apart from python3; only the first `make` needs it.
[ -x .venv/bin/python ] || "$PYTHON" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
command -v chromium >/dev/null || need+=(chromium)  # the pages, in headless Chromium
command -v pdftoppm >/dev/null || need+=(poppler-utils)  # the evidence reports, rendered
# The CJK font the evidence reports embed for Chinese findings.
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
# The machine's broker, the private brokers of the MQTT tests and their password file.
{ command -v mosquitto && command -v mosquitto_passwd; } >/dev/null || need+=(mosquitto)
command -v openssl >/dev/null || need+=(openssl)  # the MQTT TLS test makes its certificates
command -v influxd >/dev/null || need+=(influxdb)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
# The partitioned mode's tests start private nats-servers with JetStream.
{ [ -x /usr/sbin/nats-server ] || command -v nats-server; } >/dev/null || need+=(nats-server)
# The machine's cluster, and the private one the restart tests make with initdb/pg_ctl.
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)

root=false
[ "$(id -u)" -eq 0 ] && root=true
fresh_postgres=false
if [ ${#need[@]} -gt 0 ]; then
    if ! $root; then
        echo "The tests need Debian packages this machine lacks. As root, run:" >&2
        echo "apt-get install -y ${need[*]}" >&2
        echo "then run make test again." >&2
        exit 1
    fi
    echo "Installing the Debian packages the tests need: ${need[*]}"
    [[ " ${need[*]} " == *" postgresql "* ]] && fresh_postgres=true
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 50); do
        port_open "$1" && return 0
        sleep 0.2
    done
    return 1
}

start_mosquitto() {
    mosquitto -d -c /etc/mosquitto/mosquitto.conf
}

start_postgres() {
    # The cluster on 5432 if there is one; else a new one of the newest installed version.
    local cluster
    cluster=$(pg_lsclusters -h | awk '$3 == 5432 { print $1, $2; exit }')
    if [ -z "$cluster" ]; then
        cluster="$(ls /usr/lib/postgresql | sort -V | tail -1) main"
        # shellcheck disable=SC2086  # version and name are two words on purpose
        pg_createcluster $cluster --port 5432 >/dev/null
        fresh_postgres=true
    fi
    # shellcheck disable=SC2086
    pg_ctlcluster --skip-systemctl-redirect $cluster start
}

ensure_server() {
    local name=$1 port=$2 start=$3 how=$4
    port_open "$port" && return 0
    if ! $root; then
        echo "$name is not answering on 127.0.0.1:$port; start it (as root: $how)" >&2
        exit 1
    fi
    echo "Starting $name on 127.0.0.1:$port"
    $start || true
    wait_port "$port" || {
        echo "$name is not answering on 127.0.0.1:$port after starting it" >&2
        exit 1
    }
}

ensure_server Mosquitto 1883 start_mosquitto "mosquitto -d -c /etc/mosquitto/mosquitto.conf"
ensure_server PostgreSQL 5432 start_postgres "pg_ctlcluster VERSION main start"

# The tests connect as postgres from 127.0.0.1 without a password (or as MG_TEST_PG_DSN
# says). A cluster installed here gets that; any other one is the operator's to set up.
if ! PGCONNECT_TIMEOUT=5 psql "$PG_DSN" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    if $root && $fresh_postgres; then
        hba=$(runuser -u postgres -- psql -Atqc "SHOW hba_file")
        sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
        runuser -u postgres -- psql -Atqc "SELECT pg_reload_conf()" >/dev/null
    fi
    PGCONNECT_TIMEOUT=5 psql "$PG_DSN" -Atqc 'SELECT 1' >/dev/null || {
        echo "PostgreSQL on 5432 refuses $PG_DSN: allow it in pg_hba.conf" \
            "(host all postgres 127.0.0.1/32 trust), or set MG_TEST_PG_DSN" >&2
        exit 1
    }
fi
