#!/usr/bin/env bash
# Runs the ingest benchmarks (one node, S3, fleet) and appends the figures to
# bench/RESULTS.md (move a new run over its scenario's current figure). Not a test: nothing here passes or fails on a number.
#
#   bench/run.sh local           # roughy embedded default vs tusd file store (2 GiB × 3 each, then 16 × 256 MiB)
#   bench/run.sh s3              # direct multipart vs roughy --storage s3 vs tusd S3 store (2 GiB × 3 each, then 16 × 512 MiB)
#   bench/run.sh fleet           # 3 roughy nodes vs 1 on Redis + versitygw, 32 concurrent uploads
#   bench/run.sh many            # many small uploads at once: roughy embedded vs tusd file store
#   bench/run.sh smoke           # all of them, shrunk (512 MiB, 1 run), results to stdout only
#   bench/run.sh local -runs 5   # extra flags go to ingestbench (see: go run ./bench/cmd/ingestbench -help)
set -euo pipefail
cd "$(dirname "$0")/.."

gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
command -v tusd >/dev/null || go install github.com/tus/tusd/v2/cmd/tusd@v2.9.1
command -v versitygw >/dev/null || go install github.com/versity/versitygw/cmd/versitygw@v1.8.0

scenario="${1:-local}"
shift || true
case "$scenario" in
local|s3|fleet|many)
	if [ "$scenario" = fleet ] && ! command -v redis-server >/dev/null; then
		apt-get install -y redis-server
	fi
	exec go run ./bench/cmd/ingestbench -scenario "$scenario" "$@"
	;;
smoke)
	for s in local s3; do
		go run ./bench/cmd/ingestbench -scenario "$s" -size 512MiB -runs 1 -conc 4 -conc-size 128MiB -results "" "$@"
	done
	go run ./bench/cmd/ingestbench -scenario many -many 40x256KiB@8,8x4MiB@8,8x8MiB@8 -runs 1 -warmup 0 -results "" "$@"
	if command -v redis-server >/dev/null; then
		go run ./bench/cmd/ingestbench -scenario fleet -runs 1 -fleet-conc 8 -fleet-size 64MiB -results "" "$@"
	fi
	;;
*)
	echo "usage: $0 local|s3|fleet|many|smoke [ingestbench flags]" >&2
	exit 2
	;;
esac
