#!/usr/bin/env bash
# bench.sh measures remotegpu on this machine and writes docs/benchmarks.md.
# make bench builds bin/ first and takes about 7 minutes on 2 cores.
# BENCH_QUICK=1 runs the smoke version in about 2 minutes. Extra arguments
# go to remotegpu-bench, for example -skip scale.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
export CGO_CFLAGS=${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}

for bin in bin/remotegpu-coordinator bin/remotegpu-agent; do
	if [[ ! -x $bin ]]; then
		echo "bench.sh: $bin is missing; run make build first" >&2
		exit 1
	fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$GO" build -o "$tmp/remotegpu-bench" ./bench/cmd/remotegpu-bench

quick=()
if [[ ${BENCH_QUICK:-} == 1 ]]; then
	quick=(-quick)
fi
"$tmp/remotegpu-bench" "${quick[@]}" -go "$GO" -out docs/benchmarks.md "$@"
