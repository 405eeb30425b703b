#!/usr/bin/env bash
# The byte budget against throughput and peak RSS: the same --budget on the producer and the
# consumer binaries (session mode, typed at the consumer), for a fast consumer (the reference
# workload, 50,000 frames of 60.9 KB) and a slow one (--delay-ms 2, 1,000 frames). One CSV line per
# run: scenario, budget KiB, run, consumer MB/s, producer CPU s, consumer CPU s, producer peak RSS
# KiB, consumer peak RSS KiB.
# RECORDS=N changes the records per frame (default 50: 60.9 KB frames; 860: about 1 MB) and
# FRAMES=N the fast scenario's frames (default 50,000).
# Usage: [RECORDS=N] [FRAMES=N] docs/benchmarks/issue-14/budget-sweep.sh [RUNS] > out.csv
# (after cargo build --release --examples)
set -euo pipefail
runs=${1:-2}
bin=target/release/examples
port=7700
echo "scenario,budget_kib,run,mb_per_s,producer_cpu_s,consumer_cpu_s,producer_peak_rss_kib,consumer_peak_rss_kib"
for run in $(seq 1 "$runs"); do
  for scenario in fast slow; do
    for budget in 256 512 1024 2048 4096 8192; do
      port=$((port + 1))
      if [ "$scenario" = fast ]; then frames=${FRAMES:-50000}; delay=0; else frames=1000; delay=2; fi
      /usr/bin/time -f "%U %S %M" -o /tmp/fp-c.time "$bin/consumer" --listen "127.0.0.1:$port" \
        --connections 1 --budget "${budget}KiB" --delay-ms "$delay" --summary-json > /tmp/fp-c.json 2>/dev/null &
      cpid=$!
      sleep 0.3
      /usr/bin/time -f "%U %S %M" -o /tmp/fp-p.time "$bin/producer" --connect "127.0.0.1:$port" \
        --frames "$frames" --records-per-frame "${RECORDS:-50}" --budget "${budget}KiB" \
        --summary-json > /tmp/fp-p.json 2>/dev/null
      wait "$cpid"
      mbps=$(python3 -c 'import json;print(round(json.load(open("/tmp/fp-c.json"))["mb_per_s"],1))')
      read -r pu ps prss < /tmp/fp-p.time
      read -r cu cs crss < /tmp/fp-c.time
      echo "$scenario,$budget,$run,$mbps,$(echo "$pu + $ps" | bc),$(echo "$cu + $cs" | bc),$prss,$crss"
    done
  done
done
