#!/usr/bin/env bash
# Try stock_channel_sync in one command: start the local channel simulators,
# then Odoo with the module, its demo data and the queue_job job runner.
#
# Usage: ./run_demo.sh [odoo options...]
#   e.g. ./run_demo.sh --db_host=localhost --db_user=odoo --http-port=8069
#        ./run_demo.sh -c /path/to/odoo.conf
#   Another Odoo already running here? Move this one:
#        ./run_demo.sh --http-port=8079 --gevent-port=8082
#
# Environment:
#   ODOO_BIN          the Odoo command or odoo-bin script       (default: odoo)
#   ODOO_PYTHON       Python that runs ODOO_BIN (for an odoo-bin in a virtualenv);
#                     with ODOO_PYTHON and no ODOO_BIN: "$ODOO_PYTHON -m odoo"
#   DB                database, created if missing              (default: scs_demo)
#   ODOO_ADDONS_PATH  more addons directories, comma separated (queue_job's, ...)
#   PYTHON            Python for the simulators      (default: ODOO_PYTHON, python3)
#   ODOO_QUEUE_JOB_CHANNELS  job runner capacity (default: root:2,root.channel_sync:2,root.channel_sync.reconcile:1)
#
# Options given here go to Odoo after the script's own, so they win (an
# --addons-path is appended to the module's directory, not replacing it).
# Odoo listens on loopback only, unless told otherwise: a new demo database
# logs in as admin/admin (--http-interface=0.0.0.0 opens it to the network).
# The demo channels expect the simulators on 127.0.0.1:8701-8705; if
# `python -m simulators` already runs there, it is used as it is.
# Ctrl-C stops Odoo and the simulators.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE=stock_channel_sync
DB="${DB:-scs_demo}"
SIM_HOST=127.0.0.1
SIM_PORT=8701
export ODOO_QUEUE_JOB_CHANNELS="${ODOO_QUEUE_JOB_CHANNELS:-root:2,root.channel_sync:2,root.channel_sync.reconcile:1}"
# the simulators are on loopback, over plain HTTP: an HTTP proxy of the
# environment must not be asked for them (the adapters refuse to hand it
# credentials in clear)
export NO_PROXY="${NO_PROXY:+$NO_PROXY,}127.0.0.1,localhost"
export no_proxy="${no_proxy:+$no_proxy,}127.0.0.1,localhost"

if [ -n "${ODOO_PYTHON:-}" ]; then
    if [ -n "${ODOO_BIN:-}" ]; then
        ODOO_CMD=("$ODOO_PYTHON" "$ODOO_BIN")
    else
        ODOO_CMD=("$ODOO_PYTHON" -m odoo)
    fi
else
    ODOO_CMD=("${ODOO_BIN:-odoo}")
fi
if ! command -v "${ODOO_CMD[0]}" >/dev/null 2>&1; then
    echo "run_demo.sh: cannot run '${ODOO_CMD[0]}': set ODOO_BIN to odoo-bin" \
         "(and ODOO_PYTHON to the Python of its virtualenv)" >&2
    exit 2
fi
PY="${PYTHON:-${ODOO_PYTHON:-python3}}"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/scs-demo.XXXXXX")"
SIM_PID=""
WATCH_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$WATCH_PID" ]; then kill "$WATCH_PID" 2>/dev/null || true; fi
    if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then
        kill -TERM "$SIM_PID" 2>/dev/null || true
        wait "$SIM_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Job control: the background processes get their own process groups, so a
# Ctrl-C reaches this script only and is passed on to Odoo once.
set -m

# ---------------------------------------------------------------- arguments ---
# Odoo finds a module by its directory name: the addons path gets the folder
# holding a directory named stock_channel_sync (a symlink when this checkout
# has another name). Options of the user's own are kept, --addons-path is
# merged into ours.
if [ "$(basename "$ROOT")" = "$MODULE" ]; then
    ADDONS="$(dirname "$ROOT")"
else
    ln -s "$ROOT" "$TMP/$MODULE"
    ADDONS="$TMP"
fi
if [ -n "${ODOO_ADDONS_PATH:-}" ]; then
    ADDONS="$ADDONS,$ODOO_ADDONS_PATH"
fi

ARGS=()
USER_ADDONS=""
CONFIG="${ODOO_RC:-}"
HTTP_PORT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --addons-path=*) USER_ADDONS="${USER_ADDONS:+$USER_ADDONS,}${1#*=}" ;;
        --addons-path)
            shift
            USER_ADDONS="${USER_ADDONS:+$USER_ADDONS,}${1:-}"
            ;;
        -c|--config)
            CONFIG="${2:-}"
            ARGS+=("$1" "${2:-}")
            shift
            ;;
        --config=*) CONFIG="${1#*=}"; ARGS+=("$1") ;;
        -p|--http-port)
            HTTP_PORT="${2:-}"
            ARGS+=("$1" "${2:-}")
            shift
            ;;
        --http-port=*) HTTP_PORT="${1#*=}"; ARGS+=("$1") ;;
        *) ARGS+=("$1") ;;
    esac
    shift || true
done

config_value() {  # the value of an [options] key in the config file, if any
    [ -n "$CONFIG" ] && [ -r "$CONFIG" ] || return 0
    sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$CONFIG" | head -n 1
}

# a config file's addons_path would be overridden by ours: keep it
if [ -z "$USER_ADDONS" ]; then
    USER_ADDONS="$(config_value addons_path)"
fi
if [ -n "$USER_ADDONS" ]; then
    ADDONS="$ADDONS,$USER_ADDONS"
fi
HTTP_PORT="${HTTP_PORT:-$(config_value http_port)}"
HTTP_PORT="${HTTP_PORT:-8069}"
# loopback, unless the config file names an interface (an option given here
# comes after it and wins anyway)
INTERFACE=()
if [ -z "$(config_value http_interface)" ]; then
    INTERFACE=(--http-interface=127.0.0.1)
fi

# --------------------------------------------------------------- simulators ---
sim_up() {
    "$PY" - "$SIM_HOST" "$SIM_PORT" <<'EOF' >/dev/null 2>&1
import socket
import sys

with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1):
    pass
EOF
}

if sim_up; then
    echo "Simulators already listening on $SIM_HOST:$SIM_PORT: using them" \
         "(their quantity lines are printed where they run)."
else
    (cd "$ROOT" && exec "$PY" -m simulators) &
    SIM_PID=$!
    for _ in $(seq 50); do
        if sim_up; then break; fi
        if ! kill -0 "$SIM_PID" 2>/dev/null; then
            echo "run_demo.sh: the simulators did not start (see above)" >&2
            exit 1
        fi
        sleep 0.1
    done
fi

# ---------------------------------------------------------------------- odoo ---
cat <<EOF

Starting Odoo: database "$DB", module $MODULE with demo data, job runner.
The first start installs the module and takes a minute or two.

EOF

# Tell the newcomer what to do once the server answers.
NEXT_STEPS="$(cat <<EOF

============================================================================
 Odoo is ready: http://localhost:$HTTP_PORT  (database $DB)
 1. Log in (a new database: admin / admin).
 2. Inventory > Sales Channels > Channels: five demo channels, one per type,
    each bound to the demo products (Demo Mug in three colours, Demo Cap,
    Demo Notebook, Demo Tote Bag). "Test Connection" talks to its simulator.
 3. Inventory > Operations > Deliveries: open a draft delivery whose source
    is "Stock Channel Sync demo" and press Validate (or change any demo
    product's on-hand quantity).
 4. Watch the simulators' lines: within a second each of the five prints
        [shopify] DEMO-MUG-RED 42 -> 41
    (the Amazon channel keeps a buffer of 2 units).
 Send a signed order to the generic channel (webhook URL on its form):
        python3 -m simulators order <webhook URL> DEMO-CAP=1
 Ctrl-C stops Odoo and the simulators.
============================================================================
EOF
)"
"$PY" - "$HTTP_PORT" "$DB" "$NEXT_STEPS" <<'EOF' &
import sys
import time
import urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}/web/login?db={sys.argv[2]}"
for _ in range(1200):
    try:
        with urllib.request.urlopen(url, timeout=2):
            sys.stdout.write(sys.argv[3] + "\n\n")
            sys.stdout.flush()
            break
    except OSError:
        time.sleep(0.5)
EOF
WATCH_PID=$!

"${ODOO_CMD[@]}" \
    --addons-path="$ADDONS" \
    -d "$DB" \
    --db-filter="^${DB}\$" \
    ${INTERFACE[@]+"${INTERFACE[@]}"} \
    -i "$MODULE" \
    --with-demo \
    --load=base,web,queue_job \
    --workers=2 \
    --max-cron-threads=1 \
    --log-level=warn \
    ${ARGS[@]+"${ARGS[@]}"} &
ODOO_PID=$!
# Ctrl-C or a TERM to this script: Odoo shuts down gracefully (a second
# Ctrl-C forces it, as usual), then the simulators stop.
trap 'kill -INT "$ODOO_PID" 2>/dev/null || true' INT
trap 'kill -TERM "$ODOO_PID" 2>/dev/null || true' TERM
while :; do
    status=0
    wait "$ODOO_PID" || status=$?
    kill -0 "$ODOO_PID" 2>/dev/null || break  # else a signal interrupted wait
done
exit "$status"
