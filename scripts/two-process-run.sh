#!/usr/bin/env bash
# Runs the consumer and producer examples as two processes on loopback and prints, for each side,
# /usr/bin/time's wall/user/sys/max-RSS, its exit status and the --summary-json object.
#
# usage: scripts/two-process-run.sh "CONSUMER ARGS" "PRODUCER ARGS" [consumer|producer:SECS]
#   e.g. scripts/two-process-run.sh "" "--frames 50000"
#        scripts/two-process-run.sh "--delay-ms 2" "--frames 2000"
#        scripts/two-process-run.sh "--mode raw" "--frames 50000"
#        scripts/two-process-run.sh "--delay-ms 2" "--frames 20000" consumer:3   # SIGINT after 3 s
# Builds into $CARGO_TARGET_DIR if set, else ./target.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --example consumer --example producer
out=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
# shellcheck disable=SC2086 # the arguments are word lists on purpose
/usr/bin/time -f "consumer: %e s wall, %U s user, %S s sys, %M KB max RSS" \
  "$target"/release/examples/consumer --listen "127.0.0.1:$port" --connections 1 --summary-json $1 \
  >"$out/consumer.json" 2>"$out/consumer.err" &
consumer=$!
sleep 0.5
# shellcheck disable=SC2086
/usr/bin/time -f "producer: %e s wall, %U s user, %S s sys, %M KB max RSS" \
  "$target"/release/examples/producer --connect "127.0.0.1:$port" --summary-json $2 \
  >"$out/producer.json" 2>"$out/producer.err" &
producer=$!
if [[ -n "${3:-}" ]]; then
  # SIGINT to the example itself: /usr/bin/time does not pass signals on to its child.
  side=${3%%:*}
  sleep "${3#*:}"
  if [[ $side == consumer ]]; then timer=$consumer; else timer=$producer; fi
  pkill -INT -P "$timer" || true
  echo "sent SIGINT to the $side"
fi
status=0
wait "$producer" || status=$?
echo "producer exited with $status"
status=0
wait "$consumer" || status=$?
echo "consumer exited with $status"
tail -n 1 "$out/producer.err" "$out/consumer.err" | grep -v '^==' | grep -v '^$'
cat "$out/producer.json" "$out/consumer.json"
rm -rf "$out"
