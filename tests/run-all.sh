#!/bin/bash
# The whole test suite: release build with every ctest label but bench (lab tests
# need root), then the sanitizer build running unit tests and fuzz-corpus replay.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh
jobs="$(nproc)"
cmake --preset ci >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" -LE bench
cmake --preset debug >/dev/null
cmake --build build-debug -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	ctest --test-dir build-debug --output-on-failure -j"$jobs" -L 'unit|fuzz-regression'
