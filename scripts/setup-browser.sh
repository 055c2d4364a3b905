#!/usr/bin/env bash
# setup-browser.sh installs what the browser end-to-end tests (e2e/browser)
# need, and only what is missing, so it is cheap to run again: Debian's
# chromium (/usr/bin/chromium, never a downloaded browser build) and
# tus-js-client 4.3.1 in e2e/browser/node_modules (npm ci from
# package-lock.json).
#
# Runs as root on a fresh Debian machine (CI=true, no stdin); elsewhere it
# uses sudo for apt-get.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "setup-browser: $*" >&2; }

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
	sudo_cmd=(sudo)
fi

# 1. Chromium from Debian, only when missing.
if [[ ! -x /usr/bin/chromium ]]; then
	log "installing chromium"
	# One apt-get update per set-up: skip it when setup-deps.sh (or anyone)
	# refreshed the package lists within the last hours.
	if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -360 2>/dev/null | head -1) ]]; then
		"${sudo_cmd[@]}" apt-get update -qq </dev/null
	fi
	DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium </dev/null
else
	log "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo unknown)"
fi

# 2. tus-js-client's browser bundle, pinned by package-lock.json.
want=$(sed -n 's/.*"tus-js-client": "\([^"]*\)".*/\1/p' e2e/browser/package.json)
have=""
if [[ -f e2e/browser/node_modules/tus-js-client/package.json && -f e2e/browser/node_modules/tus-js-client/dist/tus.min.js ]]; then
	have=$(sed -n 's/^  "version": "\([^"]*\)".*/\1/p' e2e/browser/node_modules/tus-js-client/package.json)
fi
if [[ "$have" != "$want" ]]; then
	log "npm ci in e2e/browser"
	(cd e2e/browser && npm ci --no-audit --no-fund)
else
	log "tus-js-client $have present in e2e/browser/node_modules"
fi
