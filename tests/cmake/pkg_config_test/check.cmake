# cmake -DPKG_CONFIG_EXECUTABLE=... -DCXX=... -DPREFIX=<install prefix> -DPCDIR=<dir of ormcache.pc>
#       "-DSOURCES=../consumer_main.cpp;../consumer_sqlite_first.cpp" -DBINARY_DIR=<scratch dir>
#       -P check.cmake
#
# 1. `pkg-config --cflags --libs ormcache` succeeds and its -I names <PREFIX>/include.
# 2. SOURCES (tests/cmake/consumer_*.cpp) compile, link and run with exactly those flags; one
#    of them includes <sqlite3.h> before ormcache, which needs the .pc's -D flag.
cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS PKG_CONFIG_EXECUTABLE CXX PREFIX PCDIR SOURCES BINARY_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check.cmake: -D${var}=... is required")
  endif()
endforeach()

# Only the installed .pc (plus the system's, for nlohmann_json and sqlite3).
set(ENV{PKG_CONFIG_PATH} "${PCDIR}")
execute_process(
  COMMAND "${PKG_CONFIG_EXECUTABLE}" --cflags --libs ormcache
  OUTPUT_VARIABLE flags ERROR_VARIABLE error RESULT_VARIABLE result
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs ormcache failed (${result}): ${error}")
endif()
message(STATUS "pkg-config --cflags --libs ormcache: ${flags}")

separate_arguments(flag_list UNIX_COMMAND "${flags}")
file(REAL_PATH "${PREFIX}/include" expected_include)
set(found_include FALSE)
foreach(flag IN LISTS flag_list)
  if(flag MATCHES "^-I(.+)$")
    file(REAL_PATH "${CMAKE_MATCH_1}" dir)
    if(dir STREQUAL expected_include)
      set(found_include TRUE)
    endif()
  endif()
endforeach()
if(NOT found_include)
  message(FATAL_ERROR "pkg-config output does not name the include dir ${expected_include}")
endif()
if(NOT EXISTS "${expected_include}/ormcache/ormcache.hpp")
  message(FATAL_ERROR "${expected_include}/ormcache/ormcache.hpp was not installed")
endif()
foreach(required IN ITEMS -std=c++20 -DSQLITE_ENABLE_PREUPDATE_HOOK=1 -lSQLiteCpp -lsqlite3)
  if(NOT required IN_LIST flag_list)
    message(FATAL_ERROR "pkg-config output lacks ${required}")
  endif()
endforeach()

file(MAKE_DIRECTORY "${BINARY_DIR}")
set(exe "${BINARY_DIR}/pkg_config_consumer")
execute_process(
  COMMAND "${CXX}" ${SOURCES} -o "${exe}" ${flag_list}
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "compiling with the pkg-config flags failed (${result})")
endif()
execute_process(COMMAND "${exe}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "pkg-config consumer exited with ${result}")
endif()
