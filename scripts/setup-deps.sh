#!/usr/bin/env bash
# setup-deps.sh installs what Roughy's tests need, and only what is missing,
# so it is cheap to run again: Debian's redis-server, redis-tools, ffmpeg
# (ffprobe), jq and curl; versitygw v1.8.0 and SeaweedFS's weed (the two
# S3 servers of the S3 tests); golangci-lint v2.15.0 (scripts/test.sh);
# tus-js-client 4.3.1 for the Node end-to-end tests (e2e/js, from
# package-lock.json), also vendored into the upload page (proxy/page/vendor)
# at build time. With --bench it also installs tusd v2.9.1, the
# benchmarks' reference server.
#
# Runs as root on a fresh Debian machine (CI=true, no stdin); elsewhere it
# uses sudo for apt-get.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bench=0
for arg in "$@"; do
	case "$arg" in
	--bench) bench=1 ;;
	-h | --help)
		echo "usage: scripts/setup-deps.sh [--bench]"
		exit 0
		;;
	*)
		echo "setup-deps: unknown argument $arg (usage: scripts/setup-deps.sh [--bench])" >&2
		exit 2
		;;
	esac
done

log() { echo "setup-deps: $*" >&2; }

# 1. Debian packages: one apt-get update, one install, only when needed.
declare -A provides=(
	[redis-server]=redis-server
	[redis-cli]=redis-tools
	[ffmpeg]=ffmpeg
	[ffprobe]=ffmpeg
	[jq]=jq
	[curl]=curl
)
missing=()
for cmd in "${!provides[@]}"; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		pkg=${provides[$cmd]}
		[[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
	fi
done
if ((${#missing[@]})); then
	sudo=()
	if [[ $(id -u) != 0 ]]; then sudo=(sudo); fi
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq </dev/null
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
else
	log "Debian packages present"
fi

# 2. Go tools into $(go env GOPATH)/bin.
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
goinstall() { # name module@version
	if command -v "$1" >/dev/null 2>&1 || [[ -x "$gobin/$1" ]]; then
		log "$1 present"
		return
	fi
	log "go install $2"
	go install "$2"
}
goinstall versitygw github.com/versity/versitygw/cmd/versitygw@v1.8.0

# SeaweedFS, the second S3 server. Its go.mod has a replace directive, which
# `go install module@version` refuses: download the module, copy it to a
# writable temp dir (the module cache is read-only) and build ./weed there.
# The build takes minutes on 2 cores, once.
seaweed=github.com/seaweedfs/seaweedfs@v0.0.0-20261109003541-7506e5f91cd6
if command -v weed >/dev/null 2>&1 || [[ -x "$gobin/weed" ]]; then
	log "weed present"
else
	log "building weed from $seaweed (minutes)"
	swtmp=$(mktemp -d)
	trap 'rm -rf "$swtmp"' EXIT
	# Outside any module, so the download touches no go.mod.
	swdir=$(cd "$swtmp" && go mod download -json "$seaweed" </dev/null | jq -r '.Dir // empty')
	if [[ -z "$swdir" || ! -d "$swdir" ]]; then
		log "go mod download $seaweed failed"
		exit 1
	fi
	cp -R "$swdir" "$swtmp/src"
	chmod -R u+w "$swtmp/src"
	mkdir -p "$gobin"
	(cd "$swtmp/src" && go build -o "$gobin/weed.partial" ./weed </dev/null)
	mv "$gobin/weed.partial" "$gobin/weed"
	rm -rf "$swtmp"
fi
# golangci-lint, pinned: scripts/test.sh runs it, and another version
# reports other findings. A different version in $gobin is replaced.
golangci=github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
if "$gobin/golangci-lint" version 2>/dev/null | grep -q 'version 2\.15\.0 '; then
	log "golangci-lint 2.15.0 present"
else
	log "go install $golangci"
	go install "$golangci"
fi
if ((bench)); then
	goinstall tusd github.com/tus/tusd/v2/cmd/tusd@v2.9.1
fi

# 3. Node modules of the tus-js-client end-to-end tests.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	log "node/npm missing: apt-get install nodejs npm"
	sudo=()
	if [[ $(id -u) != 0 ]]; then sudo=(sudo); fi
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq </dev/null
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm </dev/null >/dev/null
fi
want=$(jq -r '.dependencies["tus-js-client"]' e2e/js/package.json)
have=$(jq -r '.version // empty' e2e/js/node_modules/tus-js-client/package.json 2>/dev/null || true)
if [[ "$have" != "$want" ]]; then
	log "npm ci in e2e/js (tus-js-client $want)"
	(cd e2e/js && npm ci --no-audit --no-fund --loglevel=error </dev/null)
else
	log "tus-js-client $have present"
fi

# 4. The upload page of GET / (proxy/page) embeds tus-js-client's browser
# bundle when the binary is built: vendor the pinned copy of step 3 (and
# its MIT licence) into proxy/page/vendor/, which is not in git.
mkdir -p proxy/page/vendor
for f in dist/tus.min.js LICENSE; do
	src=e2e/js/node_modules/tus-js-client/$f
	dst=proxy/page/vendor/$(basename "$f")
	[[ $f == LICENSE ]] && dst=proxy/page/vendor/tus-js-client.LICENSE
	if ! cmp -s "$src" "$dst"; then
		log "vendoring $src into $dst (upload page)"
		cp "$src" "$dst"
	fi
done
