#!/usr/bin/env bash
# A test CA and certificates for TLS and mutual TLS (SPEC §12), with openssl: the CA (ca.pem,
# ca.key), the consumer's certificate for localhost and 127.0.0.1 (consumer.pem, consumer.key) and a
# producer's client certificate (producer.pem, producer.key), in DIR (default ./certs). For tests and
# trials only: a real deployment uses its own CA and keeps ca.key elsewhere.
# Usage: docs/benchmarks/issue-22/make-certs.sh [DIR]
set -euo pipefail
dir=${1:-certs}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=framepipe test CA" -keyout ca.key -out ca.pem 2>/dev/null
leaf() { # name, subject, subjectAltName, extendedKeyUsage
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$3" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf consumer consumer "DNS:localhost,IP:127.0.0.1" serverAuth
leaf producer producer-1 "DNS:producer-1.example" clientAuth
chmod 600 ./*.key
echo "made $(pwd)/{ca,consumer,producer}.{pem,key}"
