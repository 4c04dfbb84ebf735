#!/usr/bin/env bash
# Installs everything needed to build and test ormcache on Debian 12 / Ubuntu 22.04+.
# Idempotent: packages already present are skipped and apt is not touched at all.
#
# It does not start or stop redis-server/memcached/PostgreSQL: the tests start their own
# instances on free ports (PostgreSQL: a throwaway cluster each), so the system services (if apt
# started them) are irrelevant either way.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libsqlite3-dev libsqlitecpp-dev nlohmann-json3-dev
    libhiredis-dev libmemcached-dev libpq-dev
    catch2 libbenchmark-dev clang-format
    redis-server memcached postgresql
    clang libclang-rt-14-dev
)
# Sanitizer builds need nothing extra with GCC: libasan/libubsan/libtsan come with g++.
# The fuzz targets (scripts/run-fuzzers.sh) need clang and its runtime libraries
# (libclang-rt-14-dev: libFuzzer, ASan, UBSan for clang 14, Debian 12's).

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "setup-debian: all ${#packages[@]} packages already installed"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "setup-debian: not root and sudo is missing" >&2; exit 1; }
    sudo=(sudo)
fi

echo "setup-debian: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
