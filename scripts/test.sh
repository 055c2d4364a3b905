#!/usr/bin/env bash
# test.sh installs what is missing (scripts/setup-deps.sh, and Chromium for
# e2e/browser via scripts/setup-browser.sh), then vets, lints and
# runs every test of the module. Any failure fails the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-deps.sh
scripts/setup-browser.sh
export PATH="$(go env GOPATH)/bin:$PATH"

echo "test: go vet ./..." >&2
go vet ./...
# .golangci.yml holds the linters and their limits; any finding fails.
echo "test: golangci-lint run ./..." >&2
golangci-lint run ./...
echo "test: go test ./... -count=1 -timeout 25m" >&2
go test ./... -count=1 -timeout 25m
