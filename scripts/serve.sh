#!/usr/bin/env bash
# serve.sh builds roughy and runs `roughy serve` on the embedded default
# (listen :8080, data in ./data, no external service). Arguments are passed
# to `roughy serve`, e.g. ./scripts/serve.sh --listen 127.0.0.1:9000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mkdir -p bin
go build -o bin/roughy ./cmd/roughy
exec bin/roughy serve "$@"
