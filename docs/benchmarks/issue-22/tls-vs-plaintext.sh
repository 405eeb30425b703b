#!/usr/bin/env bash
# TLS against plaintext on the reference workload (SPEC §12): the producer and consumer binaries of
# this tree, a session (the default), FRAMES reference frames (50 records, 60.9 KB each), modes
# plaintext, tls and mtls (client certificates required) alternating, one line of CSV per run:
# mode, run, producer MB/s, producer CPU s (user+sys), consumer CPU s, producer peak RSS KiB,
# consumer peak RSS KiB. Then, for the handshake, the wall time of `producer --frames 1` (connect,
# hello, one frame, goodbye) in each mode, the median of 20, as lines `# one_frame_ms,mode,ms`.
# Usage (after cargo build --release --examples, and make-certs.sh CERTS):
#   docs/benchmarks/issue-22/tls-vs-plaintext.sh CERTS [RUNS] [FRAMES] > out.csv
set -euo pipefail
certs=$1
runs=${2:-3}
frames=${3:-20000}
bin=target/release/examples
port=7840
flags() { # mode, side
  case "$1,$2" in
    plaintext,*) ;;
    tls,consumer) echo "--tls-cert $certs/consumer.pem --tls-key $certs/consumer.key" ;;
    tls,producer) echo "--tls-ca $certs/ca.pem" ;;
    mtls,consumer) echo "--tls-cert $certs/consumer.pem --tls-key $certs/consumer.key --tls-client-ca $certs/ca.pem" ;;
    mtls,producer) echo "--tls-ca $certs/ca.pem --tls-cert $certs/producer.pem --tls-key $certs/producer.key" ;;
  esac
}
echo "mode,run,producer_mb_per_s,producer_cpu_s,consumer_cpu_s,producer_peak_rss_kib,consumer_peak_rss_kib"
for run in $(seq 1 "$runs"); do
  for mode in plaintext tls mtls; do
    port=$((port + 1))
    # shellcheck disable=SC2046
    /usr/bin/time -f "%U %S %M" -o /tmp/fp22t-c.time "$bin/consumer" --listen "127.0.0.1:$port" \
      --connections 1 --summary-json $(flags "$mode" consumer) > /tmp/fp22t-c.json 2>/tmp/fp22t-c.err &
    cpid=$!
    sleep 0.3
    # shellcheck disable=SC2046
    /usr/bin/time -f "%U %S %M" -o /tmp/fp22t-p.time "$bin/producer" --connect "127.0.0.1:$port" \
      --frames "$frames" --summary-json $(flags "$mode" producer) > /tmp/fp22t-p.json 2>/tmp/fp22t-p.err
    wait "$cpid"
    mbps=$(python3 -c 'import json;print(round(json.load(open("/tmp/fp22t-p.json"))["mb_per_s"],1))')
    read -r pu ps prss < /tmp/fp22t-p.time
    read -r cu cs crss < /tmp/fp22t-c.time
    echo "$mode,$run,$mbps,$(echo "$pu + $ps" | bc),$(echo "$cu + $cs" | bc),$prss,$crss"
  done
done
for mode in plaintext tls mtls; do
  port=$((port + 1))
  # shellcheck disable=SC2046
  "$bin/consumer" --listen "127.0.0.1:$port" $(flags "$mode" consumer) > /dev/null 2>&1 &
  cpid=$!
  sleep 0.3
  ms=$(for _ in $(seq 1 20); do
    start=$(date +%s%N)
    # shellcheck disable=SC2046
    "$bin/producer" --connect "127.0.0.1:$port" --frames 1 $(flags "$mode" producer) > /dev/null 2>&1
    echo $(( ($(date +%s%N) - start) / 1000 ))
  done | sort -n | sed -n 10p)
  kill -INT "$cpid"; wait "$cpid" || true
  echo "# one_frame_ms,$mode,$(echo "scale=2; $ms / 1000" | bc)"
done
