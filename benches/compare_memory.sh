#!/usr/bin/env bash
# Peak memory of `runner compare` on two large experiments (default 1,000,000 rows each, the
# candidate wrong on every third row). Prints the figures; asserts nothing (a benchmark).
#   bash benches/compare_memory.sh [ROWS] [OTHER_RUNNER_BINARY]
# With a second binary (an older build, say) both are measured on the same store.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
other=${2:-}
cargo build --release --quiet --example compare_memory --bin runner
target=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r base cand < <("$target/examples/compare_memory" "$work/store.db" "$rows")
measure() {
    local binary=$1
    /usr/bin/time -f "%M %e" -o "$work/time" "$binary" --db "$work/store.db" \
        compare "$base" "$cand" --json > "$work/out.json"
    read -r kib secs < "$work/time"
    local regressed
    regressed=$(grep -o '"regressed_total": *[0-9]*' "$work/out.json" | grep -o '[0-9]*$' || echo "?")
    printf '%s: peak RSS %d MB, %.2f s, regressed rows %s\n' "$binary" $((kib / 1024)) "$secs" "$regressed"
}
echo "two experiments of $rows rows each"
measure "$target/runner"
if [ -n "$other" ]; then
    measure "$other"
fi
