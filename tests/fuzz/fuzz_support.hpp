#pragma once
// What every fuzz target shares: property checks, scratch directories and writing seed inputs
// (fuzz_models.hpp has the models).
//
// Seeds: a target run with ORMCACHE_FUZZ_WRITE_SEEDS=<dir> writes the inputs it makes from
// real library output (seal_envelope, the serializers) into <dir> and exits;
// tests/fuzz/corpus/<target>/ holds what that wrote, plus hand-written inputs.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace fuzz {

/// Aborts with `what`: a property does not hold (libFuzzer keeps the input as a crash).
[[noreturn]] inline void fail(const std::string& what) {
    std::fprintf(stderr, "fuzz property violated: %s\n", what.c_str());
    std::abort();
}

#define FUZZ_CHECK(condition)                                                     \
    do {                                                                          \
        if (!(condition))                                                         \
            ::fuzz::fail(std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                         ": " #condition);                                        \
    } while (false)

/// A fresh directory under $TMPDIR (or /tmp), removed at exit by the caller's choice.
inline std::string scratch_directory(const char* name) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/ormcache-" + name + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr)
        throw std::runtime_error("mkdtemp failed for " + pattern);
    return pattern;
}

/// Where seeds go when ORMCACHE_FUZZ_WRITE_SEEDS is set (see the top of this file).
inline std::optional<std::string> seed_directory() {
    const char* dir = std::getenv("ORMCACHE_FUZZ_WRITE_SEEDS");
    if (dir == nullptr || *dir == '\0')
        return std::nullopt;
    return std::string(dir);
}

/// For LLVMFuzzerInitialize: in a run that only makes seeds (seed_directory() is set), writes
/// them with write_seeds(dir) and exits; otherwise does nothing.
template <class WriteSeeds>
void write_seeds_if_asked(WriteSeeds&& write_seeds) {
    if (const auto dir = seed_directory()) {
        write_seeds(*dir);
        std::exit(0);
    }
}

inline void write_seed(const std::string& dir, const std::string& name, std::string_view bytes) {
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out)
        throw std::runtime_error("cannot write seed " + dir + "/" + name);
}

}  // namespace fuzz
