#!/usr/bin/env bash
# The cost of --metrics on the reference workload (50,000 frames of 50 reference records, 3.05 GB,
# session mode): the same binaries with and without the Prometheus endpoint on both sides, runs
# alternating, and a scrape of each endpoint every second while metrics are on (as Prometheus would,
# more often). One line of CSV per run: metrics, run, producer MB/s, producer CPU s (user+sys),
# consumer CPU s, producer peak RSS KiB, consumer peak RSS KiB, scrapes answered.
# Usage: [ORDER="on off"] docs/benchmarks/issue-13/metrics-overhead.sh [RUNS] > out.csv   (after cargo build --release --examples)
set -euo pipefail
runs=${1:-3}
bin=target/release/examples
port=7620
echo "metrics,run,producer_mb_per_s,producer_cpu_s,consumer_cpu_s,producer_peak_rss_kib,consumer_peak_rss_kib,scrapes"
for run in $(seq 1 "$runs"); do
  for metrics in ${ORDER:-off on}; do
    port=$((port + 3))
    cflag=""; pflag=""
    if [ "$metrics" = on ]; then
      cflag="--metrics 127.0.0.1:$((port + 1))"; pflag="--metrics 127.0.0.1:$((port + 2))"
    fi
    /usr/bin/time -f "%U %S %M" -o /tmp/fp-c.time "$bin/consumer" --listen "127.0.0.1:$port" \
      --connections 1 --summary-json $cflag > /tmp/fp-c.json 2>/tmp/fp-c.err &
    cpid=$!
    sleep 0.3
    /usr/bin/time -f "%U %S %M" -o /tmp/fp-p.time "$bin/producer" --connect "127.0.0.1:$port" \
      --frames 50000 --summary-json $pflag > /tmp/fp-p.json 2>/tmp/fp-p.err &
    ppid=$!
    scrapes=0
    while kill -0 "$ppid" 2>/dev/null; do
      if [ "$metrics" = on ]; then
        for p in $((port + 1)) $((port + 2)); do
          curl -sf "http://127.0.0.1:$p/metrics" -o /dev/null && scrapes=$((scrapes + 1)) || true
        done
      fi
      sleep 1
    done
    wait "$ppid"
    wait "$cpid"
    mbps=$(python3 -c 'import json;print(round(json.load(open("/tmp/fp-p.json"))["mb_per_s"],1))')
    read -r pu ps prss < /tmp/fp-p.time
    read -r cu cs crss < /tmp/fp-c.time
    echo "$metrics,$run,$mbps,$(echo "$pu + $ps" | bc),$(echo "$cu + $cs" | bc),$prss,$crss,$scrapes"
  done
done
