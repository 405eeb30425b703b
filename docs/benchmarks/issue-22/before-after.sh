#!/usr/bin/env bash
# Sessions before and after resume secrets and the connector (issue 22): the producer and consumer
# binaries of two builds, in session mode (the default), runs alternating, on FRAMES reference frames
# (50 reference records each, 60.9 KB), one line of CSV per run: build, run, producer MB/s, producer
# CPU s (user+sys), consumer CPU s, producer peak RSS KiB, consumer peak RSS KiB.
# Usage: docs/benchmarks/issue-22/before-after.sh BEFORE_BIN AFTER_BIN [RUNS] [FRAMES] > out.csv
#   where each *_BIN is a target/release/examples directory (cargo build --release --examples), e.g.
#   a worktree of the commit before with its own CARGO_TARGET_DIR, and this tree's.
set -euo pipefail
before=$1
after=$2
runs=${3:-3}
frames=${4:-20000}
port=7720
echo "build,run,producer_mb_per_s,producer_cpu_s,consumer_cpu_s,producer_peak_rss_kib,consumer_peak_rss_kib"
for run in $(seq 1 "$runs"); do
  for build in before after; do
    bin=$before; [ "$build" = after ] && bin=$after
    port=$((port + 1))
    /usr/bin/time -f "%U %S %M" -o /tmp/fp22-c.time "$bin/consumer" --listen "127.0.0.1:$port" \
      --connections 1 --summary-json > /tmp/fp22-c.json 2>/tmp/fp22-c.err &
    cpid=$!
    sleep 0.3
    /usr/bin/time -f "%U %S %M" -o /tmp/fp22-p.time "$bin/producer" --connect "127.0.0.1:$port" \
      --frames "$frames" --summary-json > /tmp/fp22-p.json 2>/tmp/fp22-p.err
    wait "$cpid"
    mbps=$(python3 -c 'import json;print(round(json.load(open("/tmp/fp22-p.json"))["mb_per_s"],1))')
    read -r pu ps prss < /tmp/fp22-p.time
    read -r cu cs crss < /tmp/fp22-c.time
    echo "$build,$run,$mbps,$(echo "$pu + $ps" | bc),$(echo "$cu + $cs" | bc),$prss,$crss"
  done
done
