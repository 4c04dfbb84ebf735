#!/usr/bin/env bash
# Build and run examples/quickstart.cpp (dependencies installed via setup-debian.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-quickstart"

"$root/scripts/setup-debian.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DORMCACHE_BUILD_EXAMPLES=ON -DORMCACHE_BUILD_TESTS=OFF -DORMCACHE_BUILD_BENCHMARKS=OFF
cmake --build "$build" --target quickstart --parallel "$(nproc)"
"$build/examples/quickstart"
