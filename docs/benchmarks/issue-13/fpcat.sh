#!/usr/bin/env bash
# fpcat's throughput against the floor: the same JSON Lines file moved by `cat FILE > /dev/tcp/...`
# into `socat -u TCP-LISTEN STDOUT` (a byte copy: no framing, no checking), and by `fpcat send` into
# `fpcat listen` (each line checked to be JSON, framed, sent in a session or --plain, checked again
# by the listener and written as a line). Output goes to /dev/null. Two files: 1,000,000 small lines
# (~60 B) and 250,000 reference records (fixtures/sample-record.json, one per line, ~1.2 KB).
# One CSV line per run: file, way, run, seconds (wall, first byte read to listener exit), MB/s,
# lines/s, sender CPU s (user+sys), receiver CPU s.
# Usage: docs/benchmarks/issue-13/fpcat.sh [RUNS] > out.csv   (after cargo build --release --examples;
# needs socat and python3)
set -euo pipefail
runs=${1:-3}
fpcat=target/release/examples/fpcat
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
with open(f"{d}/small.jsonl", "w") as f:
    for i in range(1_000_000):
        f.write(json.dumps({"i": i, "name": "user-%07d" % i, "ok": True, "score": i % 97}) + "\n")
rec = json.dumps(json.load(open("fixtures/sample-record.json")), separators=(",", ":"))
with open(f"{d}/records.jsonl", "w") as f:
    for _ in range(250_000):
        f.write(rec + "\n")
PY
port=7900
echo "file,way,run,secs,mb_per_s,lines_per_s,sender_cpu_s,receiver_cpu_s"
for file in small records; do
  input="$dir/$file.jsonl"
  bytes=$(stat -c %s "$input")
  lines=$(wc -l < "$input")
  for run in $(seq 1 "$runs"); do
    for way in floor session plain batch100; do
      port=$((port + 1))
      if [ "$way" = floor ]; then
        /usr/bin/time -f "%U %S" -o "$dir/r.time" socat -u "TCP-LISTEN:$port,reuseaddr" STDOUT > /dev/null &
      else
        /usr/bin/time -f "%U %S" -o "$dir/r.time" "$fpcat" listen "127.0.0.1:$port" --connections 1 \
          > /dev/null 2>"$dir/r.err" &
      fi
      rpid=$!
      sleep 0.3
      start=$(date +%s.%N)
      case $way in
        floor) /usr/bin/time -f "%U %S" -o "$dir/s.time" bash -c "cat '$input' > /dev/tcp/127.0.0.1/$port" ;;
        session) /usr/bin/time -f "%U %S" -o "$dir/s.time" "$fpcat" send "127.0.0.1:$port" < "$input" 2>/dev/null ;;
        plain) /usr/bin/time -f "%U %S" -o "$dir/s.time" "$fpcat" send "127.0.0.1:$port" --plain < "$input" 2>/dev/null ;;
        batch100) /usr/bin/time -f "%U %S" -o "$dir/s.time" "$fpcat" send "127.0.0.1:$port" --lines-per-frame 100 < "$input" 2>/dev/null ;;
      esac
      wait "$rpid"
      end=$(date +%s.%N)
      read -r su ss < "$dir/s.time"
      read -r ru rs < "$dir/r.time"
      python3 -c "
s = $end - $start
print(f'$file,$way,$run,{s:.3f},{$bytes / 1e6 / s:.1f},{$lines / s:.0f},{$su + $ss:.2f},{$ru + $rs:.2f}')"
    done
  done
done
