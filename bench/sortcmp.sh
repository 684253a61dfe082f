#!/usr/bin/env bash
# sortcmp.sh: issue 13's external sort figure, heapkv against PostgreSQL in
# one run on one machine.
#
# It sorts N records of 100 random bytes at work_mem 4MB, 1% of the data,
# 64MB and 2GB:
#
#   heapkv      go test ./sortspill -run XXX -bench Sort -benchtime 1x
#               -count K -sortspill.bench.records=N (BenchmarkSort: Add all,
#               Finish, read all back; plus the in-memory slices.SortFunc
#               reference). Temp files go to go test's TempDir.
#   PostgreSQL  a private server in a temp dir (initdb as the postgres user
#               when run as root, Unix socket only, fsync off, C locale),
#               one UNLOGGED table t(r bytea) of N rows of
#               gen_random_bytes(100), VACUUM ANALYZE, pg_prewarm; then
#               per work_mem, K times each:
#                 EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT r FROM t ORDER BY r
#               whose Sort node's actual total time less its Seq Scan's is
#               the sort time (Sort Method and Disk come from it too), and
#                 EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) ... ORDER BY r
#               whose Execution Time is the whole statement without per-row
#               clock readings; the same for SELECT r FROM t alone gives the
#               scan, so statement less scan is a second sort estimate.
#               max_parallel_workers_per_gather = 0 and jit = off, so it is
#               one backend on one core against one goroutine. bytea
#               compares with memcmp, as bytes.Compare does.
#
# Usage: bench/sortcmp.sh [-n N] [-count K] [-quick]
#   -n N       records (default $SORTCMP_RECORDS or 10000000)
#   -count K   repetitions of every measurement (default 3)
#   -quick     smoke test: N = 200000
# Environment: SORTCMP_RECORDS, SORTCMP_GOFLAGS (extra go test flags, e.g.
# "-cpu 1"), SORTCMP_KEEP=1 keeps the server's directory.
#
# Output: the raw go test lines, one line per PostgreSQL statement, then the
# table. Times are medians of K with min-max; ratio is heapkv over the
# PostgreSQL sort time (below 1: heapkv faster).
set -euo pipefail

N=${SORTCMP_RECORDS:-10000000}
COUNT=3
ARGS="$*"
while [ $# -gt 0 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	-count) COUNT=$2; shift 2 ;;
	-quick) N=200000; shift ;;
	-h | -help | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "sortcmp: unknown argument $1" >&2; exit 2 ;;
	esac
done
case $N in '' | *[!0-9]*) echo "sortcmp: -n wants a number of records" >&2; exit 2 ;; esac
case $COUNT in '' | *[!0-9]* | 0) echo "sortcmp: -count wants a positive number" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA_BYTES=$((N * 100))
ONE_PCT_KB=$((DATA_BYTES / 100 / 1024)) # 1% of the data, as PostgreSQL's work_mem in kB
# heapkv's name for a budget, PostgreSQL's setting for it.
WORK_MEMS=("4MB:4MB" "1%:${ONE_PCT_KB}kB" "64MB:64MB" "2GB:2GB")

for p in initdb pg_ctl psql; do
	command -v $p >/dev/null || { echo "sortcmp: $p not on PATH" >&2; exit 1; }
done
PGBIN=$(dirname "$(readlink -f "$(command -v initdb)")")
for p in jq go; do
	command -v $p >/dev/null || { echo "sortcmp: $p not on PATH" >&2; exit 1; }
done

# --- a private PostgreSQL -------------------------------------------------

BASE=$(mktemp -d /tmp/sortcmp.XXXXXX)
PORT=5432 # only names the socket: no TCP, the socket lives in $BASE
AS=()
if [ "$(id -u)" = 0 ]; then
	id postgres >/dev/null 2>&1 || { echo "sortcmp: running as root and no postgres user" >&2; exit 1; }
	chown postgres: "$BASE"
	AS=(runuser -u postgres --)
fi
cleanup() {
	if [ -f "$BASE/pgdata/postmaster.pid" ]; then
		"${AS[@]}" "$PGBIN/pg_ctl" -D "$BASE/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ "${SORTCMP_KEEP:-}" = 1 ]; then
		echo "sortcmp: kept $BASE" >&2
	else
		rm -rf "$BASE"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$BASE" -p $PORT -U bench -d postgres "$@"; }

"${AS[@]}" "$PGBIN/initdb" -D "$BASE/pgdata" -U bench -A trust --locale=C -E UTF8 --no-sync >"$BASE/initdb.log" 2>&1 ||
	{ cat "$BASE/initdb.log" >&2; exit 1; }
# shared_buffers holds the table (1.3 GB at 10M rows) so the scan
# reads memory; the sort's temp files go to pgdata/base/pgsql_tmp, on the
# same file system as go test's TempDir (/tmp).
OPTS="-k $BASE -c listen_addresses='' -c port=$PORT -c shared_buffers=3GB -c fsync=off"
OPTS+=" -c synchronous_commit=off -c full_page_writes=off -c autovacuum=off -c jit=off"
OPTS+=" -c max_parallel_workers_per_gather=0 -c max_wal_size=8GB -c log_min_messages=warning"
"${AS[@]}" "$PGBIN/pg_ctl" -D "$BASE/pgdata" -l "$BASE/server.log" -w -o "$OPTS" start >/dev/null ||
	{ cat "$BASE/server.log" >&2; exit 1; }

echo "# bench/sortcmp.sh $ARGS"
echo "# sortcmp: $N records of 100 bytes ($((DATA_BYTES / 1000000)) MB), $COUNT repetitions, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "# $(go version); $(pg -c 'SELECT version()' | cut -d, -f1)"
echo "# $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(free -g | awk '/Mem:/ {print $2 " GB RAM"}'); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# PostgreSQL: max_parallel_workers_per_gather=0, jit=off, fsync=off, shared_buffers=3GB, C locale"

t0=$(date +%s)
pg <<-SQL
	CREATE EXTENSION pgcrypto;
	CREATE EXTENSION pg_prewarm;
	CREATE UNLOGGED TABLE t (r bytea NOT NULL);
	INSERT INTO t SELECT gen_random_bytes(100) FROM generate_series(1, $N);
	VACUUM ANALYZE t;
	SELECT pg_prewarm('t') \g /dev/null
SQL
echo "# PostgreSQL load: $(($(date +%s) - t0)) s, table $(pg -c "SELECT pg_size_pretty(pg_relation_size('t'))")"

# --- PostgreSQL's sorts ---------------------------------------------------

# Raw figures, one line each: kind name value [extra].
RAW=$BASE/raw
: >"$RAW"

explain() { # work_mem options query
	pg -c "SET work_mem = '$1'" -c "EXPLAIN ($2, FORMAT JSON) $3"
}

for i in $(seq "$COUNT"); do
	ms=$(explain 4MB "ANALYZE, TIMING OFF" "SELECT r FROM t" | jq '.[0]["Execution Time"]')
	echo "pg scan            rep $i: statement ${ms} ms (timing off)"
	echo "pgscan - $ms" >>"$RAW"
done
for wm in "${WORK_MEMS[@]}"; do
	name=${wm%%:*} setting=${wm#*:}
	for i in $(seq "$COUNT"); do
		j=$(explain "$setting" "ANALYZE, BUFFERS" "SELECT r FROM t ORDER BY r")
		[ "$(jq -r '.[0].Plan["Node Type"] + "/" + .[0].Plan.Plans[0]["Node Type"]' <<<"$j")" = "Sort/Seq Scan" ] ||
			{ echo "sortcmp: the plan is not a Sort over a Seq Scan: $j" >&2; exit 1; }
		IFS=$'\t' read -r sort scan method space type < <(jq -r '.[0].Plan | [.["Actual Total Time"], .Plans[0]["Actual Total Time"], .["Sort Method"], .["Sort Space Used"], .["Sort Space Type"]] | map(tostring) | join("\t")' <<<"$j")
		sortms=$(awk -v a="$sort" -v b="$scan" 'BEGIN { printf "%.1f", a - b }')
		ms=$(explain "$setting" "ANALYZE, TIMING OFF" "SELECT r FROM t ORDER BY r" | jq '.[0]["Execution Time"]')
		printf 'pg work_mem=%-7s rep %d: sort node %s ms - scan %s ms = %s ms; %s, %s kB %s; statement %s ms (timing off)\n' \
			"$setting" "$i" "$sort" "$scan" "$sortms" "$method" "$space" "$type" "$ms"
		echo "pgsort $name $sortms" >>"$RAW"
		echo "pgstmt $name $ms" >>"$RAW"
		echo "pgmethod $name ${method// /-},${type,,}=${space}kB" >>"$RAW"
	done
	# Once more, untimed, with trace_sort's log for PostgreSQL's runs and
	# merge passes (the final, streamed merge included, as heapkv counts).
	pg -c "SET work_mem = '$setting'" -c "SET trace_sort = on" -c "SET client_min_messages = log" \
		-c "EXPLAIN (ANALYZE, TIMING OFF) SELECT r FROM t ORDER BY r" 2>"$BASE/trace.$setting" >/dev/null
	# PostgreSQL 15 logs each run it writes and each merge pass, the
	# final on-the-fly one too.
	runs=$(grep -c 'finished writing run' "$BASE/trace.$setting" || true)
	passes=$(grep -c 'starting merge pass' "$BASE/trace.$setting" || true)
	echo "pg work_mem=$setting trace_sort: $runs runs, $passes merge passes ($(grep -m1 -o 'switching to external sort with [0-9]* tapes' "$BASE/trace.$setting" || echo 'in memory'))"
	echo "pgruns $name $runs" >>"$RAW"
	echo "pgpasses $name $passes" >>"$RAW"
done

# --- heapkv's sorts -------------------------------------------------------

# The tree is shared with other engineers: say which code was measured.
echo "# heapkv tree: $(git -C "$ROOT" log -1 --format='%h %cI' 2>/dev/null || echo '?'); sortspill/*.go sha256 $(cat "$ROOT"/sortspill/*.go | sha256sum | cut -c1-12); uncommitted in sortspill: $(git -C "$ROOT" status --short -- sortspill 2>/dev/null | tr '\n' ' ')"
echo "# go test ./sortspill -run XXX -bench Sort -benchtime 1x -count $COUNT -sortspill.bench.records=$N ${SORTCMP_GOFLAGS:-}"
# shellcheck disable=SC2086 # SORTCMP_GOFLAGS is a list of flags
(cd "$ROOT" && go test ./sortspill -run XXX -bench Sort -benchtime 1x -count "$COUNT" -timeout 0 \
	-sortspill.bench.records="$N" ${SORTCMP_GOFLAGS:-}) | tee "$BASE/go.out"
awk '$1 ~ /^BenchmarkSort\// {
	name = $1; sub(/^BenchmarkSort\//, "", name); sub(/^work_mem=/, "", name); sub(/-[0-9]+$/, "", name)
	for (f = 2; f <= NF; f++) {
		if ($f == "ns/op") print "kv", name, $(f-1) / 1e6
		if ($f == "passes") print "kvpasses", name, $(f-1)
		if ($f == "runs") print "kvruns", name, $(f-1)
	}
}' "$BASE/go.out" >>"$RAW"

# --- the table ------------------------------------------------------------

# stat kind name: "median min max" of the values (ms), empty if none.
stat() {
	awk -v k="$1" -v n="$2" '$1 == k && $2 == n { print $3 }' "$RAW" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR) { m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; print m, v[1], v[NR] } }'
}
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }'; }
first() { awk -v k="$1" -v n="$2" '$1 == k && $2 == n { print $3; exit }' "$RAW"; }
fmt() { # median min max (ms) -> "12.345 s (12.001-12.900)"
	[ -n "$1" ] && awk -v m="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.3f s (%.3f-%.3f)", m/1e3, a/1e3, b/1e3 }' || echo "-"
}

read -r scanm scana scanb <<<"$(stat pgscan -)"
echo
echo "External sort of $N records of 100 random bytes; times: median of $COUNT (min-max)."
echo "heapkv: BenchmarkSort, Add all + Finish + read all (in-memory: slices.SortFunc over an index)."
echo "PG node: PostgreSQL's Sort node actual total time less its Seq Scan's (EXPLAIN ANALYZE, timing on,"
echo "  so it carries the per-row clock readings of the instrumentation)."
echo "PG stmt: the whole statement's Execution Time with TIMING OFF (scan, sort, rows to EXPLAIN's discarding receiver);"
echo "PG stmt-scan: that less the median Execution Time of SELECT r FROM t alone, $(fmt "$scanm" "$scana" "$scanb")."
echo "PG runs/passes from trace_sort (one untimed run). One backend, no parallel workers, against one goroutine."
echo "ratio = heapkv median / PostgreSQL median (below 1: heapkv faster)."
echo
row() { printf '%-11s| %-22s| %-8s| %-22s| %-22s| %-22s| %-10s| %-32s| %-6s| %s\n' "$@"; }
row work_mem heapkv "passes" "PG node" "PG stmt" "PG stmt-scan" "PG passes" "PG method" "ratio" "ratio"
row "" "" "(runs)" "" "" "" "(runs)" "" "node" "stmt-scan"
printf '%s\n' "-----------+-----------------------+---------+-----------------------+-----------------------+-----------------------+-----------+---------------------------------+-------+----------"
read -r imm ima imb <<<"$(stat kv in-memory)"
row in-memory "$(fmt "$imm" "$ima" "$imb")" "0 (0)" - - - - - - -
for wm in "${WORK_MEMS[@]}"; do
	name=${wm%%:*} setting=${wm#*:}
	label=$name
	[ "$name" = "1%" ] && label="1%=$setting"
	read -r km ka kb <<<"$(stat kv "$name")"
	read -r sm sa sb <<<"$(stat pgsort "$name")"
	read -r tm ta tb <<<"$(stat pgstmt "$name")"
	read -r nm na nb <<<"$(awk -v k=pgstmt -v n="$name" -v s="${scanm:-0}" '$1 == k && $2 == n { print $3 - s }' "$RAW" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR) { m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; print m, v[1], v[NR] } }')"
	row "$label" "$(fmt "$km" "$ka" "$kb")" \
		"$(first kvpasses "$name" | cut -d. -f1) ($(first kvruns "$name" | cut -d. -f1))" \
		"$(fmt "$sm" "$sa" "$sb")" "$(fmt "$tm" "$ta" "$tb")" "$(fmt "$nm" "$na" "$nb")" \
		"$(first pgpasses "$name") ($(first pgruns "$name"))" "$(first pgmethod "$name")" \
		"$(ratio "$km" "$sm")" "$(ratio "$km" "$nm")"
done
echo
read -r pm _ <<<"$(stat kv 1%)"
awk -v a="${pm:-0}" -v b="${imm:-0}" 'BEGIN {
	if (a > 0 && b > 0) printf "goal 1: heapkv at work_mem=1%% / heapkv in-memory = %.2f (goal: at most 2): %s\n", a / b, a / b <= 2 ? "met" : "missed"
}'
for wm in "${WORK_MEMS[@]}"; do
	name=${wm%%:*}
	read -r km _ <<<"$(stat kv "$name")"
	read -r sm _ <<<"$(stat pgsort "$name")"
	read -r tm _ <<<"$(stat pgstmt "$name")"
	awk -v n="$name" -v a="${km:-0}" -v b="${sm:-0}" -v c="${tm:-0}" -v s="${scanm:-0}" 'BEGIN {
		if (a <= 0 || b <= 0) exit
		v = "heapkv faster by node only"
		if (a < b && a < c - s) v = "heapkv faster by both"
		if (a >= b && a >= c - s) v = "PostgreSQL faster by both"
		if (a >= b && a < c - s) v = "heapkv faster by stmt-scan only"
		printf "goal 2: work_mem=%-5s heapkv %.3f s; PostgreSQL %.3f s (node), %.3f s (stmt-scan): %s\n", n, a / 1e3, b / 1e3, (c - s) / 1e3, v
	}'
done
