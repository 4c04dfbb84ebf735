# ormcache_warnings(<target>)
#
# Warning and sanitizer flags for ormcache's *own* executables (tests, examples, benchmarks).
# Never call this on the INTERFACE targets: whatever they carry is forced onto every consumer,
# and a consumer's -Werror build must not break because of our warning set, nor must a
# consumer get sanitizer flags it did not ask for.
include_guard(GLOBAL)

include(CheckCXXCompilerFlag)

set(_ormcache_sanitizers "" address thread)
if(NOT ORMCACHE_SANITIZE IN_LIST _ormcache_sanitizers)
  message(FATAL_ERROR
    "ORMCACHE_SANITIZE='${ORMCACHE_SANITIZE}' is not supported; use \"\" (none), \"address\" "
    "(AddressSanitizer + UndefinedBehaviorSanitizer) or \"thread\" (ThreadSanitizer).")
endif()

if(ORMCACHE_SANITIZE STREQUAL "thread")
  # GCC >= 12 warns (-Wtsan) that std::atomic_thread_fence is not instrumented by TSan; with
  # ORMCACHE_WERROR that would fail the build although it is only a diagnostic about TSan
  # itself. Probe for the flag so compilers that do not know it (clang) are unaffected.
  check_cxx_compiler_flag(-Wtsan ORMCACHE_HAVE_WTSAN)
endif()

function(ormcache_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive-)
    if(ORMCACHE_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  else()
    # GCC 12's -Wmissing-field-initializers (part of -Wextra) warns when a designated
    # initializer leaves out a member that has no default member initializer, as the documented
    # `users.add({.name = "tmp"})` does (it leaves out `email`). Omitted members are
    # value-initialized, so in that documented style the warning finds nothing wrong.
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
                                             -Wno-missing-field-initializers)
    if(ORMCACHE_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()

  if(ORMCACHE_SANITIZE STREQUAL "address")
    set(flags -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # GCC's -Wmaybe-uninitialized gives false positives on ASan-instrumented code (GCC 12
      # flags libstdc++'s own <regex>, pulled in by Catch2's main). The unsanitized build
      # keeps the warning, so nothing is lost by silencing it here.
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
    endif()
  elseif(ORMCACHE_SANITIZE STREQUAL "thread")
    set(flags -fsanitize=thread)
    if(ORMCACHE_HAVE_WTSAN)
      target_compile_options(${target} PRIVATE -Wno-tsan)
    endif()
  else()
    return()
  endif()
  # Object libraries are compiled but not linked; link options on them are harmless and keep
  # the function usable for every kind of target we own.
  target_compile_options(${target} PRIVATE ${flags})
  target_link_options(${target} PRIVATE ${flags})
endfunction()
