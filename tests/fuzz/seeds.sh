#!/bin/sh
# Seed corpora for the harnesses, from data/fixtures (docs/hardening.md): seeds.sh OUTDIR makes
# OUTDIR/<target>/ for safetensors, json, idx, idx_gz and csv. Only POSIX tools and gzip.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fx="$here/../../data/fixtures"
out=$1
mkdir -p "$out/safetensors" "$out/json" "$out/idx" "$out/idx_gz" "$out/csv"
cp "$fx/tiny.safetensors" "$out/safetensors/"
# the JSON header of the safetensors fixture (little-endian u64 length, then the header)
hlen=$(od -An -t u8 -N 8 "$fx/tiny.safetensors" | tr -d ' ')
dd if="$fx/tiny.safetensors" of="$out/json/tiny-header.json" bs=1 skip=8 count="$hlen" 2>/dev/null
printf '{"a":[1,-2.5e3,true,false,null,"\\u00e9\\ud83d\\ude00"],"b":{}}' > "$out/json/mixed.json"
cp "$fx/tiny-i16.idx" "$fx/tiny-labels-idx1-ubyte" "$out/idx/"
gzip -dc "$fx/tiny-f64.idx.gz" > "$out/idx/tiny-f64.idx"
gzip -dc "$fx/tiny-images-idx3-ubyte.gz" > "$out/idx/tiny-images-idx3-ubyte"
cp "$fx/tiny-f64.idx.gz" "$fx/tiny-images-idx3-ubyte.gz" "$fx/tiny-i16.idx" "$out/idx_gz/"
cp "$fx/tricky.csv" "$out/csv/"
printf 'seed,loss,name\n1,0.25,a\n2,nan,"b,c"\n3,,\n' > "$out/csv/mixed.csv"
