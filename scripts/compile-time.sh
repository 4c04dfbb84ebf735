#!/usr/bin/env bash
# Compile time of a user's translation unit against the libraries ormcache builds on
# (issue 11, item 5; figures in docs/benchmarks.md, "Compile time").
#
#   scripts/compile-time.sh            3 runs each, prints the medians and the ratios
#   RUNS=5 scripts/compile-time.sh     more runs
#   CXX=clang++ scripts/compile-time.sh
#
# Compiles, side by side and alternating (the machine may be noisy), with $CXX -std=c++20 -O2 -c,
# and reports the compiler's CPU time (user + sys), median of the runs:
#   (a) scripts/compile-time/baseline.cpp   nlohmann/json + SQLiteCpp, included and used trivially
#   (b) scripts/compile-time/one_model.cpp  one ORMCACHE_MODEL, a Database with the memory cache,
#                                           a Repository<T> calling add/get/list/count
#   (c) scripts/compile-time/umbrella.cpp   only #include <ormcache/ormcache.hpp>
#   (d) one_model.cpp again with -DORMCACHE_COMPILED: the same TU in compiled mode (linking
#       ormcache::ormcache_compiled; src/ormcache_compiled.cpp is compiled once per build)
# The goal is (b)/(a) <= 2, or (d)/(a) <= 2 for programs that use the compiled mode.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cxx="${CXX:-g++}"
runs="${RUNS:-3}"
flags=(-std=c++20 -O2 -I"$root/include" -DSQLITE_ENABLE_PREUPDATE_HOOK=1)
tus=(baseline one_model umbrella one_model_compiled)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

declare -A times
for ((run = 1; run <= runs; run++)); do
    for tu in "${tus[@]}"; do
        # CPU seconds (user + sys) of the compiler: wall time swings with the other jobs.
        source="$tu" extra=()
        if [[ "$tu" == one_model_compiled ]]; then
            source=one_model extra=(-DORMCACHE_COMPILED)
        fi
        cpu=$({ TIMEFORMAT='%3U %3S' && time "$cxx" "${flags[@]}" "${extra[@]}" -c \
            "$root/scripts/compile-time/$source.cpp" -o "$out/$tu.o"; } 2>&1)
        times[$tu]+="$(awk -v t="$cpu" 'BEGIN {split(t, p, " "); printf "%.2f", p[1] + p[2]}') "
    done
done

median() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "$("$cxx" --version | head -1), ${flags[*]/#-I*/-I include}, median of $runs, CPU seconds"
declare -A med
for tu in "${tus[@]}"; do
    med[$tu]=$(median "${times[$tu]}")
    printf '  %-18s %6.2f s   (runs: %s)\n' "$tu" "${med[$tu]}" "${times[$tu]% }"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "  one_model / baseline = $(ratio "${med[one_model]}" "${med[baseline]}")   (goal: <= 2)"
echo "  umbrella  / baseline = $(ratio "${med[umbrella]}" "${med[baseline]}")"
echo "  one_model_compiled / baseline = $(ratio "${med[one_model_compiled]}" "${med[baseline]}")   (goal: <= 2)"
