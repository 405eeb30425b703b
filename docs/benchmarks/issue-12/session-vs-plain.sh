#!/usr/bin/env bash
# Session mode against plain mode on the reference workload (50,000 frames of 50 reference records,
# 3.05 GB), same binaries, runs alternating, one line of CSV per run: mode, run, producer MB/s,
# producer CPU s (user+sys), consumer CPU s, producer peak RSS KiB, consumer peak RSS KiB.
# Usage: docs/benchmarks/issue-12/session-vs-plain.sh [RUNS] > out.csv   (after cargo build --release --examples)
set -euo pipefail
runs=${1:-3}
bin=target/release/examples
port=7520
echo "mode,run,producer_mb_per_s,producer_cpu_s,consumer_cpu_s,producer_peak_rss_kib,consumer_peak_rss_kib"
for run in $(seq 1 "$runs"); do
  for mode in plain session; do
    port=$((port + 1))
    flag=""; [ "$mode" = plain ] && flag="--plain"
    /usr/bin/time -f "%U %S %M" -o /tmp/fp-c.time "$bin/consumer" --listen "127.0.0.1:$port" \
      --connections 1 --summary-json > /tmp/fp-c.json 2>/tmp/fp-c.err &
    cpid=$!
    sleep 0.3
    /usr/bin/time -f "%U %S %M" -o /tmp/fp-p.time "$bin/producer" --connect "127.0.0.1:$port" \
      --frames 50000 $flag --summary-json > /tmp/fp-p.json 2>/tmp/fp-p.err
    wait "$cpid"
    mbps=$(python3 -c 'import json;print(round(json.load(open("/tmp/fp-p.json"))["mb_per_s"],1))')
    read -r pu ps prss < /tmp/fp-p.time
    read -r cu cs crss < /tmp/fp-c.time
    echo "$mode,$run,$mbps,$(echo "$pu + $ps" | bc),$(echo "$cu + $cs" | bc),$prss,$crss"
  done
done
