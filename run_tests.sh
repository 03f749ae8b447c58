#!/usr/bin/env bash
# Run every check of the stock_channel_sync addon: lint, pure-Python tests and,
# when a Python that can import Odoo is available, the Odoo tests against a
# throwaway PostgreSQL cluster.
#
# Usage: ./run_tests.sh
#
# Environment:
#   PYTHON        Python for the tools and the pure tests   (default: python3)
#   ODOO_PYTHON   Python that can `import odoo`   (default: $PYTHON, else the
#                 Python of an `odoo` command found on PATH, as pip installs it)
#   PG_BINDIR     directory holding initdb/pg_ctl/postgres  (default: searched)
#   SCS_SKIP_ODOO=1          skip the Odoo tests on purpose
#   SCS_ODOO_TIMEOUT=SECONDS   time limit of the Odoo run   (default: 2700)
#   SCS_PYTEST_TIMEOUT=SECONDS time limit of the pure tests (default: 900)
#
# The last line printed is "N passed, N failed[, N skipped]" over all the test
# suites that ran; the exit status is non-zero when anything failed.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

PY="${PYTHON:-python3}"
ODOO_PY="${ODOO_PYTHON:-$PY}"
if [ -z "${ODOO_PYTHON:-}" ] && ! "$ODOO_PY" -c 'from odoo import release' >/dev/null 2>&1; then
    # an Odoo installed with pip into its own virtualenv puts an `odoo`
    # script on PATH whose first line names that virtualenv's Python
    if odoo_cmd="$(command -v odoo 2>/dev/null)"; then
        shebang="$(head -n 1 "$(readlink -f "$odoo_cmd")" 2>/dev/null || true)"
        case "$shebang" in
            '#!'*python*) candidate="${shebang#\#!}"; candidate="${candidate%% *}"
                if [ -x "$candidate" ]; then ODOO_PY="$candidate"; fi ;;
        esac
    fi
fi
MODULE=stock_channel_sync
DB_NAME=scs_test
DB_USER=scs_odoo          # PostgreSQL superuser created by initdb (never "postgres": Odoo refuses it)
PG_OS_USER=scs-pg         # unprivileged OS user that owns the cluster when we run as root

TMP="$(mktemp -d "${TMPDIR:-/tmp}/scs-tests.XXXXXX")"
PG_CTL=""
PGDATA_DIR=""
RUN_AS=""

# ---------------------------------------------------------------- helpers ---
now() { date +%s; }
hr() { printf '\n==== %s ====\n' "$*"; }

as_pg() {
    # Run a command as the cluster owner (root cannot run PostgreSQL).
    if [ -n "$RUN_AS" ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u "$RUN_AS" -- "$@"
        else
            local q
            q="$(printf '%q ' "$@")"
            su -s /bin/sh "$RUN_AS" -c "$q"
        fi
    else
        "$@"
    fi
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$PG_CTL" ] && [ -n "$PGDATA_DIR" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        (cd "$TMP" && as_pg "$PG_CTL" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null 2>&1)
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$PY" - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

declare -A STAGE_STATUS=()
declare -A STAGE_TIME=()
STAGES=()
OVERALL=0
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
SUITES_RAN=()
SUITES_SKIPPED=()

record() {  # record NAME STATUS SECONDS
    STAGES+=("$1")
    STAGE_STATUS[$1]="$2"
    STAGE_TIME[$1]="$3"
    if [ "$2" = FAILED ]; then OVERALL=1; fi
}

# ------------------------------------------------------ 1. test-only tools ---
hr "tools ($PY)"
t0=$(now)
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    echo "ERROR: $PY is missing or older than Python 3.10 (set PYTHON)" >&2
    exit 2
fi
check_tools() {
    "$PY" - <<'EOF' 2>/dev/null
import importlib, subprocess, sys
for mod in ("pytest", "hypothesis", "ruff", "pylint", "pylint_odoo",
            "standardwebhooks", "requests", "cryptography"):
    importlib.import_module(mod)
subprocess.run([sys.executable, "-m", "ruff", "--version"], check=True,
               stdout=subprocess.DEVNULL)
EOF
}
if check_tools; then
    echo "test tools already installed"
else
    echo "installing test tools from requirements-test.txt"
    # every distribution already installed keeps its version: $PY may be
    # the Python that runs Odoo, whose pins (cryptography, pyOpenSSL...) an
    # upgrade would break
    "$PY" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null \
        | grep -E '^[A-Za-z0-9_.-]+==' > "$TMP/keep-installed.txt" || true
    pip_args=(-m pip install -q --disable-pip-version-check
              -c "$TMP/keep-installed.txt" -r requirements-test.txt)
    in_venv="$("$PY" -c 'import sys; print(int(sys.prefix != sys.base_prefix))')"
    if ! "$PY" "${pip_args[@]}"; then
        if [ "$(id -u)" != 0 ] && [ "$in_venv" = 0 ]; then
            echo "retrying with --user"
            "$PY" "${pip_args[@]}" --user
        else
            echo "ERROR: could not install requirements-test.txt into $PY without" \
                 "changing a package it already has; set PYTHON to another Python" >&2
            exit 2
        fi
    fi
    check_tools || { echo "ERROR: test tools still not importable by $PY" >&2; exit 2; }
fi
record "tools" OK $(( $(now) - t0 ))

# ------------------------------------------------------------------ 2. lint ---
# pylint-odoo checks that matter for an Odoo 19 addon and hold for plain Odoo
# code (OCA-only rules such as manifest-required-author and
# translation-required are left out). import-error and friends stay disabled:
# the lint must not need odoo importable.
PYLINT_ODOO_CHECKS=(
    # mandatory
    sql-injection invalid-commit external-request-timeout
    # correctness
    print-used except-pass method-required-super missing-return
    no-write-in-compute no-raise-unlink super-method-mismatch
    method-compute method-inverse method-search
    context-overridden test-folder-imported odoo-addons-relative-import
    bad-builtin-groupby no-search-all odoo-exception-warning
    consider-merging-classes-inherited
    # translations
    translation-field translation-injection translation-positional-used
    translation-contains-variable
    # deprecated in Odoo 17-19
    deprecated-name-get deprecated-odoo-model-method deprecated-self-cr
    deprecated-inselect-operator attribute-deprecated renamed-field-parameter
    inheritable-method-string inheritable-method-lambda
    attribute-string-redundant
    # manifest
    license-allowed manifest-required-key manifest-version-format
    manifest-deprecated-key manifest-author-string manifest-maintainers-list
    manifest-data-duplicated manifest-external-assets manifest-behind-migrations
    development-status-allowed website-manifest-key-not-valid-uri
    resource-not-exist missing-readme
)
PYLINT_CORE_CHECKS=(
    dangerous-default-value duplicate-key eval-used pointless-statement
    reimported return-in-init too-few-format-args unreachable
)
enable="$(IFS=,; echo "${PYLINT_ODOO_CHECKS[*]},${PYLINT_CORE_CHECKS[*]}")"

hr "lint: ruff"
t0=$(now)
lint_status=OK
# N999 on __init__.py judges the name of the folder the repository was cloned
# into (the addon root is a package), which the code cannot choose.
if ! "$PY" -m ruff check --extend-per-file-ignores='__init__.py:N999' .; then
    lint_status=FAILED
fi
record "lint: ruff check" "$lint_status" $(( $(now) - t0 ))

hr "lint: pylint-odoo"
t0=$(now)
lint_status=OK
# "." lints the addon package: the manifest checks and every Python package
# in it (models, controllers, lib, simulators, tests). Folders without an
# __init__.py (tests/pure) are not part of it and are named on their own.
pylint_targets=(.)
for d in tests tests/pure; do
    if [ -d "$d" ]; then pylint_targets+=("$d"); fi
done
if "$PY" -m pylint \
        --load-plugins=pylint_odoo \
        --disable=all --enable="$enable" \
        --disable=import-error,no-name-in-module,no-member \
        --valid-odoo-versions=19.0 \
        --recursive=y --ignore=benchmarks,static,.git \
        --score=n --reports=n \
        "${pylint_targets[@]}"; then
    echo "pylint-odoo: no issue (${#PYLINT_ODOO_CHECKS[@]} pylint-odoo + ${#PYLINT_CORE_CHECKS[@]} pylint checks)"
else
    lint_status=FAILED
fi
record "lint: pylint-odoo" "$lint_status" $(( $(now) - t0 ))

# ---------------------------------------------------------- 3. pure tests ---
hr "pure-Python tests (pytest)"
t0=$(now)
junit="$TMP/pytest.xml"
pytest_rc=0
timeout --signal=TERM --kill-after=30 "${SCS_PYTEST_TIMEOUT:-900}" \
    "$PY" -m pytest tests/pure -q --junitxml="$junit" || pytest_rc=$?
if [ "$pytest_rc" -eq 124 ] || [ "$pytest_rc" -eq 137 ]; then
    echo "pytest timed out after ${SCS_PYTEST_TIMEOUT:-900}s"
fi
read -r p_pass p_fail p_skip < <("$PY" - "$junit" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 0, 0)
    raise SystemExit
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = fail = skip = 0
for s in suites:
    tests += int(s.get("tests", 0))
    fail += int(s.get("failures", 0)) + int(s.get("errors", 0))
    skip += int(s.get("skipped", 0))
print(tests - fail - skip, fail, skip)
EOF
)
status=OK
if [ "$pytest_rc" -ne 0 ] && [ "$pytest_rc" -ne 1 ] && [ "$pytest_rc" -ne 5 ]; then
    echo "pytest did not complete (exit $pytest_rc)"
    status=FAILED
    [ "$p_fail" -eq 0 ] && p_fail=1
elif [ "$pytest_rc" -eq 5 ] || [ $((p_pass + p_fail + p_skip)) -eq 0 ]; then
    echo "pytest collected no test"
    status=FAILED
    p_fail=1
elif [ "$pytest_rc" -ne 0 ]; then
    status=FAILED
    # errors outside any test (collection, internal) still count as a failure
    [ "$p_fail" -eq 0 ] && p_fail=1
fi
echo "pytest: $p_pass passed, $p_fail failed, $p_skip skipped (exit $pytest_rc)"
TOTAL_PASSED=$((TOTAL_PASSED + p_pass))
TOTAL_FAILED=$((TOTAL_FAILED + p_fail))
TOTAL_SKIPPED=$((TOTAL_SKIPPED + p_skip))
SUITES_RAN+=("pure-Python (pytest)")
record "pure tests" "$status" $(( $(now) - t0 ))

# ----------------------------------------------------------- 4. Odoo tests ---
find_pg_bindir() {
    local d
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        d="$(dirname "$(command -v initdb)")"
        if [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

odoo_tests() {
    # Runs in the current shell; sets o_pass/o_fail and returns non-zero on failure.
    local bindir pg_port http_port pgroot sockdir addons log conf odoo_rc summary
    local o_tests=0 o_failed=0 o_errors=0 bad=0

    if ! bindir="$(find_pg_bindir)"; then
        echo "ERROR: odoo is importable but no PostgreSQL server binaries (initdb, pg_ctl," \
             "postgres) were found on PATH, in /usr/lib/postgresql/*/bin or /usr/local/bin;" \
             "install PostgreSQL or set PG_BINDIR (or SCS_SKIP_ODOO=1)" >&2
        return 1
    fi
    echo "PostgreSQL binaries: $bindir ($("$bindir/postgres" --version))"
    PG_CTL="$bindir/pg_ctl"

    pgroot="$TMP/pg"
    sockdir="$pgroot"
    PGDATA_DIR="$pgroot/data"
    mkdir -p "$pgroot"
    if [ "$(id -u)" = 0 ]; then
        if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER" \
                >/dev/null 2>&1 || true
        fi
        if id -u "$PG_OS_USER" >/dev/null 2>&1; then RUN_AS="$PG_OS_USER"; else RUN_AS=nobody; fi
        chmod 755 "$TMP"
        chown "$RUN_AS" "$pgroot"
        echo "running as root: the cluster runs as OS user '$RUN_AS'"
    fi
    chmod 700 "$pgroot"

    pg_port="$(free_port)"
    http_port="$(free_port)"
    while [ "$http_port" = "$pg_port" ]; do http_port="$(free_port)"; done

    (cd "$pgroot" && as_pg "$bindir/initdb" -D "$PGDATA_DIR" -U "$DB_USER" -A trust \
        -E UTF8 --locale=C --no-sync >"$TMP/initdb.log" 2>&1) || {
        echo "ERROR: initdb failed:" >&2; cat "$TMP/initdb.log" >&2; return 1; }
    if ! (cd "$pgroot" && as_pg "$PG_CTL" -D "$PGDATA_DIR" -l "$pgroot/postgres.log" -w -t 120 \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $sockdir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null); then
        echo "ERROR: PostgreSQL did not start:" >&2
        cat "$pgroot/postgres.log" >&2 || true
        return 1
    fi
    echo "PostgreSQL listening on 127.0.0.1:$pg_port (superuser $DB_USER)"

    addons="$TMP/addons"
    mkdir -p "$addons"
    ln -s "$ROOT" "$addons/$MODULE"
    conf="$TMP/odoo.conf"
    printf '[options]\n' >"$conf"
    log="$TMP/odoo.log"

    echo "running Odoo: -i $MODULE --test-tags /$MODULE (log at info level follows)"
    odoo_rc=0
    timeout --signal=TERM --kill-after=60 "${SCS_ODOO_TIMEOUT:-2700}" \
        "$ODOO_PY" -m odoo server \
            --config="$conf" \
            --addons-path="$addons" \
            --data-dir="$TMP/odoo-data" \
            --db_host=127.0.0.1 --db_port="$pg_port" --db_user="$DB_USER" \
            -d "$DB_NAME" -i "$MODULE" --with-demo \
            --test-enable --test-tags "/$MODULE" \
            --stop-after-init --max-cron-threads=0 \
            --http-port="$http_port" --http-interface=127.0.0.1 \
            --log-level=info 2>&1 | tee "$log" || odoo_rc=$?

    summary="$(grep -E '[0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests when loading database' "$log" | tail -n 1 || true)"
    if [ -n "$summary" ]; then
        read -r o_failed o_errors o_tests < <(sed -E \
            's/.* ([0-9]+) failed, ([0-9]+) error\(s\) of ([0-9]+) tests when loading database.*/\1 \2 \3/' \
            <<<"$summary")
    fi

    echo
    echo "---- Odoo test verdict ----"
    if [ "$odoo_rc" -eq 124 ] || [ "$odoo_rc" -eq 137 ]; then
        echo "FAIL: Odoo run timed out after ${SCS_ODOO_TIMEOUT:-2700}s"
        bad=1
    elif [ "$odoo_rc" -ne 0 ]; then
        echo "FAIL: Odoo exited with status $odoo_rc"
        bad=1
    fi
    if [ -z "$summary" ]; then
        echo "FAIL: no 'N failed, N error(s) of N tests when loading database' line in the log"
        bad=1
    fi
    # Install problems: errors from the module loader/registry, a failed
    # database initialisation, or a traceback before the tests started.
    local install_errors
    install_errors="$(grep -E ' (ERROR|CRITICAL) [^ ]+ odoo\.(modules\.(loading|registry|module|graph)|registry|schema|service\.server|sql_db|tools\.convert): ' "$log" \
        | grep -v -E 'when loading database|At least one test failed|Module [^ ]+: [0-9]+ failures, [0-9]+ errors of' || true)"
    if [ -n "$install_errors" ]; then
        echo "FAIL: the module did not install cleanly:"
        printf '%s\n' "$install_errors" | head -n 20
        bad=1
    fi
    local first_test_line
    first_test_line="$(grep -n -m1 -E 'odoo\.addons\.'"$MODULE"'\.tests|Starting post tests|running tests' "$log" | cut -d: -f1 || true)"
    if [ -n "$first_test_line" ]; then
        if awk -v n="$first_test_line" 'NR < n && /^Traceback/ {found = 1; exit}
                END {exit !found}' "$log"; then
            echo "FAIL: a traceback was logged during the install, before the tests"
            bad=1
        fi
    elif grep -q '^Traceback' "$log"; then
        echo "FAIL: a traceback was logged and no test started"
        bad=1
    fi
    # The module must have ended up installed.
    local state
    state="$("$ODOO_PY" - "$pg_port" "$DB_USER" "$DB_NAME" "$MODULE" <<'EOF' 2>/dev/null || true
import sys
import psycopg2
port, user, db, module = sys.argv[1:]
with psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname=db) as cn:
    with cn.cursor() as cr:
        cr.execute("SELECT state FROM ir_module_module WHERE name = %s", (module,))
        row = cr.fetchone()
        print(row[0] if row else "absent")
EOF
)"
    if [ "$state" != installed ]; then
        echo "FAIL: module $MODULE state in the database is '${state:-unknown}', not 'installed'"
        bad=1
    fi
    if [ "$o_tests" -eq 0 ]; then
        echo "FAIL: 0 Odoo tests ran (tests/ must hold Odoo test modules imported by tests/__init__.py)"
        bad=1
    fi
    if [ "$o_failed" -gt 0 ] || [ "$o_errors" -gt 0 ]; then
        echo "FAIL: $o_failed failed, $o_errors error(s) among $o_tests Odoo tests"
        grep -E ' (ERROR|CRITICAL) [^ ]+ odoo\.addons\.'"$MODULE"'\.tests' "$log" | head -n 20 || true
        bad=1
    fi
    o_fail=$((o_failed + o_errors))
    # a test that skipped itself (the UI tour without Chrome) counts among
    # the tests run: it is reported as skipped, not as passed
    local skips
    skips="$(grep -E ' odoo\.addons\.'"$MODULE"'\.tests\.[A-Za-z0-9_.]+: skipped ' "$log" \
        | sed -E 's/.*: skipped (.*)$/\1/' || true)"
    o_skip=0
    [ -n "$skips" ] && o_skip="$(printf '%s\n' "$skips" | wc -l)"
    o_pass=$((o_tests - o_fail - o_skip))
    [ "$o_pass" -lt 0 ] && o_pass=0
    if [ "$bad" -ne 0 ] && [ "$o_fail" -eq 0 ]; then
        o_fail=1   # an install/run failure counts as one failed test
    fi
    echo "Odoo tests: $o_tests run, $o_failed failed, $o_errors error(s), $o_skip skipped (module state: ${state:-unknown})"
    if [ "$o_skip" -gt 0 ]; then
        printf '%s\n' "$skips" | sed 's/^/  skipped: /'
    fi

    (cd "$TMP" && as_pg "$PG_CTL" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null 2>&1) || true
    return "$bad"
}

hr "Odoo tests"
t0=$(now)
o_pass=0
o_fail=0
o_skip=0
if [ "${SCS_SKIP_ODOO:-0}" = 1 ]; then
    reason="SCS_SKIP_ODOO=1"
    echo "SKIPPED: Odoo tests ($reason)"
    SUITES_SKIPPED+=("Odoo ($reason)")
    record "Odoo tests" SKIPPED $(( $(now) - t0 ))
elif ! "$ODOO_PY" -c 'from odoo import release' >/dev/null 2>&1; then
    reason="odoo is not importable by $ODOO_PY; set ODOO_PYTHON"
    echo "SKIPPED: Odoo tests ($reason)"
    SUITES_SKIPPED+=("Odoo ($reason)")
    record "Odoo tests" SKIPPED $(( $(now) - t0 ))
else
    echo "Odoo $("$ODOO_PY" -c 'from odoo import release; print(release.version)') via $ODOO_PY"
    status=OK
    odoo_tests || status=FAILED
    if [ "$status" = FAILED ] && [ "$o_fail" -eq 0 ]; then o_fail=1; fi
    TOTAL_PASSED=$((TOTAL_PASSED + o_pass))
    TOTAL_FAILED=$((TOTAL_FAILED + o_fail))
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + o_skip))
    SUITES_RAN+=("Odoo (--test-tags /$MODULE)")
    record "Odoo tests" "$status" $(( $(now) - t0 ))
fi

# --------------------------------------------------------------- summary ---
hr "summary"
for s in "${STAGES[@]}"; do
    printf '%-20s %-8s %5ss\n' "$s" "${STAGE_STATUS[$s]}" "${STAGE_TIME[$s]}"
done
join() { local out="" x; for x in "$@"; do out="${out:+$out, }$x"; done; echo "${out:-none}"; }
echo "suites run: $(join "${SUITES_RAN[@]}"); suites skipped: $(join "${SUITES_SKIPPED[@]}")"
if [ "$OVERALL" -ne 0 ]; then
    echo "RESULT: FAILED"
else
    echo "RESULT: OK"
fi
if [ "$TOTAL_SKIPPED" -gt 0 ]; then
    echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
else
    echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
fi
exit "$OVERALL"
