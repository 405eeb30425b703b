#!/usr/bin/env bash
# The producer's CPU against the comparison's, with the same source built two ways: as `cargo bench`
# builds it, and with every loop aligned to 64 bytes (RUSTFLAGS="-C llvm-args=-align-loops=64", in
# its own target directory). Both stacks run from the same binary, each with its own compiled copy of
# serde_json's serializer placed wherever the build put it; the second build shows how much of the
# difference between them is code placement, not work.
# Each run is the e2e bench's own producer and consumer children (`--role`), one stack at a time,
# builds and stacks interleaved. One CSV line per run: build, workload, stack, run, consumer MB/s,
# producer user s, producer sys s, consumer user s, consumer sys s.
# WORKLOADS="reference large" sets the workloads (reference, large, small).
# Usage: docs/benchmarks/issue-14/producer-layout.sh [RUNS] > out.csv   (from the repository root)
set -euo pipefail
runs=${1:-3}

# The bench's executable for one build: "Executable benches/e2e/main.rs (PATH)" on cargo's stderr.
build() {
  cargo bench --bench e2e --no-run 2>&1 | sed -n 's/.*Executable benches\/e2e\/main.rs (\(.*\))/\1/p'
}
default_exe=$(build)
aligned_exe=$(CARGO_TARGET_DIR=target/layout-aligned RUSTFLAGS="-C llvm-args=-align-loops=64" build)
[ -x "$default_exe" ] && [ -x "$aligned_exe" ] || { echo "could not build the bench" >&2; exit 1; }

# One run: consumer child in the background, producer child in the foreground, both report JSON.
run_once() { # exe stack records frames body_len
  local exe=$1 stack=$2 records=$3 frames=$4 body_len=$5 out=/tmp/fp-layout-consumer.out
  local args=(--stack "$stack" --payload typed --frames "$frames" --records-per-frame "$records" --body-len "$body_len")
  : > "$out" # so that the previous run's LISTEN line cannot be read before the child truncates it
  "$exe" --role consumer "${args[@]}" >> "$out" 2>/dev/null &
  local cpid=$!
  until grep -q LISTEN "$out"; do
    kill -0 "$cpid" 2>/dev/null || { echo "the $stack consumer exited before listening" >&2; exit 1; }
    sleep 0.05
  done
  local port producer
  port=$(awk '/LISTEN/ {print $2}' "$out")
  producer=$("$exe" --role producer "${args[@]}" --port "$port" 2>/dev/null)
  wait "$cpid"
  python3 - "$producer" "$(grep -v LISTEN "$out")" <<'EOF'
import json, sys
p, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
mbps = p["wire_bytes"] / c["elapsed_s"] / 1e6
print(f'{mbps:.1f},{p["user_s"]:.3f},{p["sys_s"]:.3f},{c["user_s"]:.3f},{c["sys_s"]:.3f}')
EOF
}

echo "build,workload,stack,run,mb_per_s,producer_user_s,producer_sys_s,consumer_user_s,consumer_sys_s"
for run in $(seq 1 "$runs"); do
  for workload in ${WORKLOADS:-reference large}; do
    case $workload in
      reference) shape="50 50000 60901" ;;
      large) shape="821 3000 999979" ;;
      small) shape="1 1000000 1219" ;;
      *) echo "unknown workload $workload" >&2; exit 2 ;;
    esac
    for build_name in default aligned; do
      if [ "$build_name" = default ]; then exe=$default_exe; else exe=$aligned_exe; fi
      for stack in framepipe tokio-util+serde_json; do
        # shellcheck disable=SC2086 # the shape is three words on purpose
        echo "$build_name,$workload,$stack,$run,$(run_once "$exe" "$stack" $shape)"
      done
    done
  done
done
