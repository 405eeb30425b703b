#!/usr/bin/env bash
# Candidate default budgets, producer and consumer apart: the reference workload (50,000 frames of
# 60.9 KB; fast) and 1,000 frames at --delay-ms 2 (slow), session mode, typed at the consumer, the
# pairs interleaved run by run. One CSV line per run: scenario, producer budget KiB, consumer budget
# KiB, run, consumer MB/s, producer CPU s, consumer CPU s, producer peak RSS KiB, consumer peak RSS KiB.
# PAIRS="P:C ..." sets the pairs (KiB; default "4096:4096 512:512 512:1024 1024:1024").
# Usage: docs/benchmarks/issue-14/defaults.sh [RUNS] > out.csv   (after cargo build --release --examples)
set -euo pipefail
runs=${1:-3}
bin=target/release/examples
port=7800
echo "scenario,producer_budget_kib,consumer_budget_kib,run,mb_per_s,producer_cpu_s,consumer_cpu_s,producer_peak_rss_kib,consumer_peak_rss_kib"
for run in $(seq 1 "$runs"); do
  for scenario in fast slow; do
    for pair in ${PAIRS:-4096:4096 512:512 512:1024 1024:1024}; do
      pb=${pair%:*}; cb=${pair#*:}
      port=$((port + 1))
      if [ "$scenario" = fast ]; then frames=50000; delay=0; else frames=1000; delay=2; fi
      /usr/bin/time -f "%U %S %M" -o /tmp/fpd-c.time "$bin/consumer" --listen "127.0.0.1:$port" \
        --connections 1 --budget "${cb}KiB" --delay-ms "$delay" --summary-json > /tmp/fpd-c.json 2>/dev/null &
      cpid=$!
      sleep 0.3
      /usr/bin/time -f "%U %S %M" -o /tmp/fpd-p.time "$bin/producer" --connect "127.0.0.1:$port" \
        --frames "$frames" --budget "${pb}KiB" --summary-json > /tmp/fpd-p.json 2>/dev/null
      wait "$cpid"
      mbps=$(python3 -c 'import json;print(round(json.load(open("/tmp/fpd-c.json"))["mb_per_s"],1))')
      read -r pu ps prss < /tmp/fpd-p.time
      read -r cu cs crss < /tmp/fpd-c.time
      echo "$scenario,$pb,$cb,$run,$mbps,$(echo "$pu + $ps" | bc),$(echo "$cu + $cs" | bc),$prss,$crss"
    done
  done
done
