#!/usr/bin/env bash
# Time to open the web UI's comparison page of two large experiments (default 100,000 rows
# each, the candidate wrong on every third row): the first open (read from the store) and the
# next pages and filters, every row included (paged from the comparison kept in memory).
# Prints the figures; asserts nothing.
#   bash benches/ui_compare.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
cargo build --release --quiet --example compare_memory --bin runner
target=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server"; rm -rf "$work"' EXIT
read -r base cand < <("$target/examples/compare_memory" "$work/store.db" "$rows")
"$target/runner" --db "$work/store.db" serve --bind 127.0.0.1:0 > "$work/out" 2> "$work/err" &
server=$!
for _ in $(seq 100); do grep -q http "$work/out" && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$work/out")
echo "two experiments of $rows rows each"
time_page() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$url/compare?baseline=$base&candidate=$cand$1"
}
read -r code secs < <(time_page "")
printf 'first open: HTTP %s in %.0f ms\n' "$code" "$(echo "$secs * 1000" | bc)"
for page in 2 100 600; do
    read -r code secs < <(time_page "&show=regressed&page=$page")
    printf 'regressed page %s: HTTP %s in %.0f ms\n' "$page" "$code" "$(echo "$secs * 1000" | bc)"
done
read -r code secs < <(time_page "&show=improved")
printf 'improved filter: HTTP %s in %.0f ms\n' "$code" "$(echo "$secs * 1000" | bc)"
for page in 1 1000; do
    read -r code secs < <(time_page "&show=all&page=$page")
    printf 'all rows page %s: HTTP %s in %.0f ms\n' "$page" "$code" "$(echo "$secs * 1000" | bc)"
done
