#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang in build-fuzz/ and runs each one for a
# while on a scratch copy of its seed corpus (tests/fuzz/corpus/<target>/; nothing is written
# into the source tree).
#
#   scripts/run-fuzzers.sh [seconds-per-target] [target...]
#
# seconds-per-target defaults to 20; targets default to every fuzz_* built. Exits nonzero when
# a target crashes, leaks, trips a sanitizer or a property check: the input that did it is
# kept in build-fuzz/findings/<target>/ (reproduce: build-fuzz/tests/fuzz/<target> <file>).
# Environment: FUZZ_JOBS (build parallelism, default 2), FUZZ_MAX_LEN (default 4096),
# FUZZ_CXXFLAGS (default -O1 for runs of 60 s a target or more, -O0 below), CC/CXX (default
# clang/clang++).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-20}"
shift || true
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "run-fuzzers: seconds must be a number, got '$seconds'" >&2; exit 2; }

# clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev).
have_libfuzzer() {
    command -v "${CXX:-clang++}" >/dev/null &&
        [[ -e "$("${CXX:-clang++}" --print-runtime-dir)/libclang_rt.fuzzer-$(uname -m).a" ]]
}
have_libfuzzer || "$root/scripts/setup-debian.sh"
build="$root/build-fuzz"
# Line tables only (symbolized stacks, a fraction of -g's build time). -O1 as libFuzzer
# recommends for real runs; short runs (CI's) build at -O0, since there the build is most of the
# time: 2-3 times faster to build, about half the execs.
if [[ -z "${FUZZ_CXXFLAGS:-}" ]]; then
    if ((seconds >= 60)); then FUZZ_CXXFLAGS="-O1 -gline-tables-only"; else FUZZ_CXXFLAGS="-O0 -gline-tables-only"; fi
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="$FUZZ_CXXFLAGS" \
    -DCMAKE_C_COMPILER="${CC:-clang}" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
    -DORMCACHE_BUILD_FUZZERS=ON -DORMCACHE_BUILD_TESTS=OFF -DORMCACHE_BUILD_EXAMPLES=OFF \
    -DORMCACHE_BUILD_BENCHMARKS=OFF -DORMCACHE_INSTALL=OFF -DORMCACHE_WERROR=ON >/dev/null
build_start=$SECONDS
cmake --build "$build" -j "${FUZZ_JOBS:-2}"
echo "run-fuzzers: built in $((SECONDS - build_start))s ($FUZZ_CXXFLAGS)"

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(find "$build/tests/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x \
        -printf '%f\n' | sort)
fi
((${#targets[@]} > 0)) || { echo "run-fuzzers: no fuzz targets built" >&2; exit 1; }

scratch="$(mktemp -d "${TMPDIR:-/tmp}/ormcache-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
summary=()
failed=0
for target in "${targets[@]}"; do
    name="${target#fuzz_}"
    binary="$build/tests/fuzz/$target"
    [[ -x "$binary" ]] || { echo "run-fuzzers: no target $target" >&2; exit 1; }
    corpus="$scratch/$name"
    mkdir -p "$corpus"
    if [[ -d "$root/tests/fuzz/corpus/$name" ]]; then
        cp -R "$root/tests/fuzz/corpus/$name/." "$corpus/"
    fi
    findings="$build/findings/$target"
    mkdir -p "$findings"
    log="$scratch/$name.log"
    printf '\n---- %s: %ss, %s seed inputs ----\n' "$target" "$seconds" "$(ls "$corpus" | wc -l)"
    rc=0
    # The targets make their own scratch files under TMPDIR; give them the run's scratch.
    TMPDIR="$scratch" "$binary" "$corpus" -max_total_time="$seconds" \
        -max_len="${FUZZ_MAX_LEN:-4096}" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$findings/" >"$log" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    if ((rc != 0)); then
        failed=1
        tail -n 60 "$log" >&2
        summary+=("$(printf '%-22s FAILED (exit %d), see %s' "$target" "$rc" "$findings")")
    else
        summary+=("$(printf '%-22s ok  %10s execs  %7s exec/s  %s  %ss' "$target" "${execs:-?}" \
            "${rate:-?}" "${cov:-}" "$seconds")")
    fi
done

printf '\n---- run-fuzzers summary ----\n'
printf '%s\n' "${summary[@]}"
exit "$failed"
