#!/usr/bin/env bash
# Issue 14's before/after of the end-to-end benchmark, interleaved: the e2e bench of the commit
# before issue 14's changes (b72852a, built in a worktree at $BEFORE, default /work/before) and of
# this tree take turns, one run each per round, so drifts of the shared machine hit both alike.
# Then this tree alone with --features mimalloc. Results in target/issue-14/{before,after,mimalloc}-N/.
# Usage: docs/benchmarks/issue-14/before-after.sh [ROUNDS]
#   (once: git worktree add /work/before b72852a && (cd /work/before && cargo bench --bench e2e --no-run))
set -euo pipefail
rounds=${1:-3}
before=${BEFORE:-/work/before}
out=target/issue-14
mkdir -p "$out"
cargo bench --bench e2e --no-run --locked 2>/dev/null
cargo bench --bench e2e --no-run --locked --features mimalloc 2>/dev/null
for round in $(seq 1 "$rounds"); do
  (cd "$before" && cargo bench --bench e2e --locked -- --runs 1 --workloads reference,small,large \
    --out "$OLDPWD/$out/before-$round") > "$out/before-$round.md"
  cargo bench --bench e2e --locked -- --runs 1 --workloads reference,small,large,raw,payload,parallel \
    --out "$out/after-$round" > "$out/after-$round.md"
done
cargo bench --bench e2e --locked --features mimalloc -- --runs "$rounds" \
  --workloads reference,raw,payload,parallel --out "$out/mimalloc" > "$out/mimalloc.md"
