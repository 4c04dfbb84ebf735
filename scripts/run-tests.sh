#!/usr/bin/env bash
# Configure, build and test ormcache in one of three modes:
#
#   scripts/run-tests.sh [default]   RelWithDebInfo, -Werror, benchmarks, every test including
#                                    the consumer-project and compile-fail tests  -> build/
#   scripts/run-tests.sh asan        ASan+UBSan; consumer/compile-fail skipped    -> build-asan/
#   scripts/run-tests.sh tsan        TSan; consumer/compile-fail skipped          -> build-tsan/
#
# The skipped tests check packaging and diagnostics, which no sanitizer changes.
#
# Environment: JOBS (default: nproc), BUILD_DIR (overrides the build directory),
# CXX (compiler, picked up by CMake as usual).
set -euo pipefail

mode="${1:-default}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="${JOBS:-$(nproc)}"

"$root/scripts/setup-debian.sh"

# Sanitizer builds: Debug keeps assertions. -g1 (line tables only) is all a sanitizer report
# needs for file:line, and it compiles these template-heavy tests in less than half the time
# full debug info (-g) takes. TSan builds at -O1, which keeps its slow tests reasonably fast;
# ASan+UBSan at -O0: UBSan's checks make GCC's optimizer 2.6 times slower on a test file
# (test_cache.cpp: 87 s at -O1, 34 s at -O0), far more than the tests lose at run time.
sanitizer_flags=(-DCMAKE_BUILD_TYPE=Debug -DORMCACHE_BUILD_BENCHMARKS=OFF)
ctest_args=()
case "$mode" in
    default)
        build="${BUILD_DIR:-$root/build}"
        cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
                    -DORMCACHE_BUILD_BENCHMARKS=ON
                    -DORMCACHE_SANITIZE=)
        ;;
    asan)
        build="${BUILD_DIR:-$root/build-asan}"
        cmake_args=("${sanitizer_flags[@]}" "-DCMAKE_CXX_FLAGS_DEBUG=-g1 -O0"
                    -DORMCACHE_SANITIZE=address)
        ctest_args=(-LE 'consumer|compile_fail')
        export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
        export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
        ;;
    tsan)
        build="${BUILD_DIR:-$root/build-tsan}"
        cmake_args=("${sanitizer_flags[@]}" "-DCMAKE_CXX_FLAGS_DEBUG=-g1 -O1"
                    -DORMCACHE_SANITIZE=thread)
        ctest_args=(-LE 'consumer|compile_fail')
        export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
        ;;
    *)
        echo "usage: $0 [default|asan|tsan]" >&2
        exit 2
        ;;
esac

# Examples are built and run (as a test) in every mode, under the sanitizers too.
cmake -S "$root" -B "$build" -DORMCACHE_BUILD_TESTS=ON -DORMCACHE_BUILD_EXAMPLES=ON \
    -DORMCACHE_WERROR=ON "${cmake_args[@]}"
cmake --build "$build" --parallel "$jobs"

runner=()
if [[ "$mode" == tsan ]]; then
    # TSan's shadow-memory layout clashes with high-entropy ASLR on some kernels
    # ("FATAL: ThreadSanitizer: unexpected memory mapping"). Probe with a trivial TSan
    # program and, if it hits that, run the tests with ASLR disabled for this process tree.
    probe_dir="$build/tsan-probe"
    mkdir -p "$probe_dir"
    printf 'int main() { return 0; }\n' >"$probe_dir/probe.cpp"
    "${CXX:-c++}" -fsanitize=thread "$probe_dir/probe.cpp" -o "$probe_dir/probe"
    if ! probe_out="$("$probe_dir/probe" 2>&1)"; then
        if grep -q "unexpected memory mapping" <<<"$probe_out" &&
            setarch "$(uname -m)" -R "$probe_dir/probe"; then
            echo "run-tests: TSan needs ASLR off on this kernel, using setarch -R"
            runner=(setarch "$(uname -m)" -R)
        else
            echo "run-tests: a trivial TSan program fails here:" >&2
            echo "$probe_out" >&2
            exit 1
        fi
    fi
fi

"${runner[@]}" ctest --test-dir "$build" --output-on-failure --parallel "$jobs" "${ctest_args[@]}"
