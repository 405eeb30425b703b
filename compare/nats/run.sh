#!/usr/bin/env bash
# framepipe and NATS core side by side on the reference workload (issue 14), from the repository
# root: compare/nats/run.sh [RUNS] > out.csv
#
# Scenarios: "fast" — 50,000 frames of 50 reference records (3.05 GB), the receiver parses each into
# records as fast as it can; "slow" — 2,000 frames, the receiver sleeps 2 ms before each. NATS:
# nats-server (the distribution's package) with the async-nats client, publisher and subscriber in
# separate processes; the slow subscriber with async-nats's default subscription buffer and with a
# capacity of 1,024 messages. framepipe: the producer and consumer example binaries (a session, typed
# at the consumer; --delay-ms 2 when slow). Every process runs under /usr/bin/time. One CSV line per
# run: system, scenario, run, receiver MB/s, seconds the sender took (a NATS publisher is not slowed
# by a slow subscriber), frames received, frames lost, sender CPU s, receiver CPU s, server CPU s,
# sender / receiver / server peak RSS KiB.
set -euo pipefail
runs=${1:-1}
if ! command -v nats-server >/dev/null 2>&1; then
  echo "compare/nats/run.sh: nats-server is not installed (apt-get install nats-server); skipped" >&2
  exit 0
fi
cargo build --release --examples --quiet
cargo build --release --quiet --manifest-path compare/nats/Cargo.toml
nats=compare/nats/target/release/framepipe-nats-compare
bin=target/release/examples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port=4333
cpu() { awk '{printf "%.2f", $2 + $3}' "$1"; }
rss() { awk '{print $4}' "$1"; }

nats_run() { # scenario count delay capacity
  local scenario=$1 count=$2 delay=$3 capacity=$4 cap_flag=""
  [ "$capacity" != default ] && cap_flag="--capacity $capacity"
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/server.time" nats-server -p $port -a 127.0.0.1 2>"$tmp/server.err" &
  local time_pid=$!
  sleep 0.5
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/sub.time" "$nats" --url "nats://127.0.0.1:$port" sub \
    --count "$count" --delay-ms "$delay" $cap_flag > "$tmp/sub.json" 2>"$tmp/sub.err" &
  local sub_pid=$!
  until grep -q ready "$tmp/sub.err" 2>/dev/null; do sleep 0.1; done
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/pub.time" "$nats" --url "nats://127.0.0.1:$port" pub \
    --count "$count" > "$tmp/pub.json"
  wait "$sub_pid"
  kill -INT "$(pgrep -P "$time_pid")"
  wait "$time_pid" || true
  python3 - "$tmp" "nats (capacity $capacity)" "$scenario" "$run" "$(cpu "$tmp/pub.time")" \
    "$(cpu "$tmp/sub.time")" "$(cpu "$tmp/server.time")" "$(rss "$tmp/pub.time")" \
    "$(rss "$tmp/sub.time")" "$(rss "$tmp/server.time")" <<'PY'
import json, sys
tmp, system, scenario, run, pc, sc, vc, pr, sr, vr = sys.argv[1:]
s = json.load(open(f"{tmp}/sub.json"))
p = json.load(open(f"{tmp}/pub.json"))
print(f"{system},{scenario},{run},{s['mb_per_s']:.1f},{p['secs']:.2f},{s['received']},{s['lost']},{pc},{sc},{vc},{pr},{sr},{vr}")
PY
}

framepipe_run() { # scenario count delay
  local scenario=$1 count=$2 delay=$3
  local listen=127.0.0.1:$((port + 1000))
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/sub.time" "$bin/consumer" --listen "$listen" \
    --connections 1 --delay-ms "$delay" --summary-json > "$tmp/sub.json" 2>/dev/null &
  local sub_pid=$!
  sleep 0.3
  /usr/bin/time -f "%e %U %S %M" -o "$tmp/pub.time" "$bin/producer" --connect "$listen" \
    --frames "$count" --summary-json > "$tmp/pub.json" 2>/dev/null
  wait "$sub_pid"
  python3 - "$tmp" "$scenario" "$run" "$count" "$(cpu "$tmp/pub.time")" "$(cpu "$tmp/sub.time")" \
    "$(rss "$tmp/pub.time")" "$(rss "$tmp/sub.time")" <<'PY'
import json, sys
tmp, scenario, run, count, pc, sc, pr, sr = sys.argv[1:]
c = json.load(open(f"{tmp}/sub.json"))
p = json.load(open(f"{tmp}/pub.json"))
print(f"framepipe (session),{scenario},{run},{c['mb_per_s']:.1f},{p['secs']:.2f},{c['frames']},{int(count) - c['frames']},{pc},{sc},,{pr},{sr},")
PY
}

echo "system,scenario,run,receiver_mb_per_s,sender_secs,received,lost,sender_cpu_s,receiver_cpu_s,server_cpu_s,sender_peak_rss_kib,receiver_peak_rss_kib,server_peak_rss_kib"
for run in $(seq 1 "$runs"); do
  port=$((port + 1))
  framepipe_run fast 50000 0
  nats_run fast 50000 0 default
  port=$((port + 1))
  framepipe_run slow 2000 2
  nats_run slow 2000 2 default
  port=$((port + 1))
  nats_run slow 2000 2 1024
done
