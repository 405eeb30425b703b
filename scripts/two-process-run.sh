#!/usr/bin/env bash
# Runs the consumer and producer examples as two processes on loopback and prints, for each side,
# /usr/bin/time's wall/user/sys/max-RSS and the --summary-json object.
#
# usage: scripts/two-process-run.sh "CONSUMER ARGS" "PRODUCER ARGS"
#   e.g. scripts/two-process-run.sh "" "--frames 50000"
#        scripts/two-process-run.sh "--delay-ms 2" "--frames 2000"
#        scripts/two-process-run.sh "--mode raw" "--frames 50000"
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example consumer --example producer
out=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
# shellcheck disable=SC2086 # the arguments are word lists on purpose
/usr/bin/time -f "consumer: %e s wall, %U s user, %S s sys, %M KB max RSS" \
  ./target/release/examples/consumer --listen "127.0.0.1:$port" --connections 1 --summary-json $1 \
  >"$out/consumer.json" 2>"$out/consumer.err" &
consumer=$!
sleep 0.5
# shellcheck disable=SC2086
/usr/bin/time -f "producer: %e s wall, %U s user, %S s sys, %M KB max RSS" \
  ./target/release/examples/producer --connect "127.0.0.1:$port" --summary-json $2 \
  >"$out/producer.json" 2>"$out/producer.err" || echo "producer exited with $?"
wait "$consumer" || echo "consumer exited with $?"
tail -n 1 "$out/producer.err" "$out/consumer.err" | grep -v '^==' | grep -v '^$'
cat "$out/producer.json" "$out/consumer.json"
rm -rf "$out"
