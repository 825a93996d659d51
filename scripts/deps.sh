#!/bin/bash
# Installs the Debian packages of scripts/packages.txt (and .ci/packages.txt) that are missing.
# Runs apt-get update first when anything is missing, or always with --update.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lists=("$here/packages.txt")
[ -f "$here/../.ci/packages.txt" ] && lists+=("$here/../.ci/packages.txt")
mapfile -t wanted < <(cat "${lists[@]}" | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=()
for p in "${wanted[@]}"; do
	# a node.js from elsewhere (NodeSource's nodejs carries npm, and conflicts
	# with Debian's npm package) serves as well
	[ "$p" = npm ] && command -v npm >/dev/null 2>&1 && continue
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm packages of the browser lab test (tests/lab/browser: JsSIP, ws, esbuild),
# from its package-lock.json; again whenever the lock file changed
npm_deps() {
	local d="$here/../tests/lab/browser"
	command -v npm >/dev/null 2>&1 || return 0
	[ -f "$d/node_modules/.package-lock.json" ] && [ "$d/node_modules/.package-lock.json" -nt "$d/package-lock.json" ] &&
		[ "${1:-}" != "--update" ] && return 0
	(cd "$d" && npm ci --no-audit --no-fund)
}
if [ "${1:-}" != "--update" ] && [ ${#missing[@]} -eq 0 ]; then
	npm_deps
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: need root to install: ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
if [ ${#missing[@]} -gt 0 ]; then
	apt-get install -y --no-install-recommends "${missing[@]}"
fi
npm_deps "${1:-}"
