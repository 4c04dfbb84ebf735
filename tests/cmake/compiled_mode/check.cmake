# cmake -DNM=<nm> -DOBJECT=<object file> -P check.cmake
#
# Compiled mode (ormcache::ormcache_compiled): a user's translation unit compiled with
# ORMCACHE_COMPILED must not carry its own copy of the functions the library defines once; it
# refers to them (undefined symbols, resolved by the library at link time). Checked on those
# scripts/compile-time/one_model.cpp reaches directly, in its object file. A header that stops honouring
# ORMCACHE_DEFINITIONS, or a build that drops ORMCACHE_COMPILED, fails here.
cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS NM OBJECT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check.cmake: -D${var}=... is required")
  endif()
endforeach()

execute_process(COMMAND "${NM}" -C --defined-only "${OBJECT}" OUTPUT_VARIABLE defined
                RESULT_VARIABLE rc1)
execute_process(COMMAND "${NM}" -C --undefined-only "${OBJECT}" OUTPUT_VARIABLE undefined
                RESULT_VARIABLE rc2)
if(NOT rc1 EQUAL 0 OR NOT rc2 EQUAL 0)
  message(FATAL_ERROR "${NM} -C ${OBJECT} failed")
endif()

# Functions the probe reaches directly (the library's own functions call the rest).
set(problems 0)
foreach(function IN ITEMS "ormcache::Database::Database("
                          "ormcache::detail::CacheCore::key_space[abi:cxx11]("
                          "ormcache::detail::Singleflight::run_ref("
                          "ormcache::detail::build_model_sql(")
  # nm -C writes "<address> <type> <name>" for a definition, "U <name>" for a reference.
  foreach(type IN ITEMS T W t)
    string(FIND "${defined}" " ${type} ${function}" at)
    if(NOT at EQUAL -1)
      message("compiled mode: the user's object defines ${function}...) (nm type ${type}); "
              "it must only refer to it")
      math(EXPR problems "${problems} + 1")
    endif()
  endforeach()
  string(FIND "${undefined}" "U ${function}" at)
  if(at EQUAL -1)
    message("compiled mode: ${function}...) is not referred to (the probe or the check needs "
            "updating)")
    math(EXPR problems "${problems} + 1")
  else()
    message(STATUS "referred to, defined by the library: ${function}...)")
  endif()
endforeach()
if(problems GREATER 0)
  message(FATAL_ERROR "compiled mode: ${problems} problem(s) in ${OBJECT}")
endif()
