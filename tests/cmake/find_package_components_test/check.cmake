# cmake -DCXX=... -DGENERATOR=... -DPREFIX=<install prefix> -DCMAKEDIR=<config dir, relative>
#       -DBINARY_DIR=<scratch dir> -P check.cmake
#
# What find_package(ormcache) does when a backend cannot be loaded (issue 10). Configure-only
# projects, so each case costs a configure, not a build; find_package_test and readme_test
# build the case where everything is there.
#
# 1. hiredis and libmemcached hidden from pkg-config: plain find_package(ormcache) gives the
#    core and no backend, without a word; COMPONENTS redis then fails naming redis and
#    libhiredis-dev.
# 2. an installation without the memcached component: plain find_package(ormcache) still
#    gives ormcache::redis; COMPONENTS memcached fails naming memcached and the option.
cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS CXX GENERATOR PREFIX CMAKEDIR BINARY_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check.cmake: -D${var}=... is required")
  endif()
endforeach()

# check_case(<name> <prefix> <expected output regex> <CMakeLists.txt body>)
# Configures the project and expects it to FAIL (the body ends with a find_package that must
# fail) with output matching the regex. The body prints "plain find_package done" once the
# checks of the plain find_package passed; nothing before that line may mention a backend.
function(check_case name prefix expected body)
  set(dir "${BINARY_DIR}/${name}")
  file(REMOVE_RECURSE "${dir}")
  file(WRITE "${dir}/src/CMakeLists.txt"
       "cmake_minimum_required(VERSION 3.21)\nproject(${name} LANGUAGES CXX)\n${body}")
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -S "${dir}/src" -B "${dir}/build" -G "${GENERATOR}"
            "-DCMAKE_CXX_COMPILER=${CXX}" "-DCMAKE_PREFIX_PATH=${prefix}"
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE result)
  set(out "${out}${err}")
  string(FIND "${out}" "plain find_package done" marker)
  if(marker EQUAL -1)
    message(FATAL_ERROR "${name}: the plain find_package(ormcache) checks failed:\n${out}")
  endif()
  string(SUBSTRING "${out}" 0 ${marker} before)
  if(before MATCHES "[Ww]arning|hiredis|memcached|redis")
    message(FATAL_ERROR "${name}: plain find_package(ormcache) was not quiet:\n${before}")
  endif()
  if(result EQUAL 0)
    message(FATAL_ERROR "${name}: the COMPONENTS find_package succeeded, it must fail:\n${out}")
  endif()
  # CMake wraps the reason it prints at its own line width.
  string(REGEX REPLACE "[ \t\r\n]+" " " flat "${out}")
  if(NOT flat MATCHES "${expected}")
    message(FATAL_ERROR "${name}: the failure does not match '${expected}':\n${out}")
  endif()
  message(STATUS "${name}: OK")
endfunction()

# 1. Nothing for pkg-config to find: an empty PKG_CONFIG_LIBDIR replaces its default search
# path (the prefix's share/pkgconfig, added from CMAKE_PREFIX_PATH, holds only ormcache.pc).
set(empty "${BINARY_DIR}/empty_pkgconfig")
file(MAKE_DIRECTORY "${empty}")
set(ENV{PKG_CONFIG_LIBDIR} "${empty}")
set(ENV{PKG_CONFIG_PATH} "")
check_case(
  backend_library_missing "${PREFIX}"
  "component 'redis' needs the pkg-config module 'hiredis' \\(Debian/Ubuntu: apt-get install \
libhiredis-dev\\)"
  [[
find_package(ormcache 0.1 CONFIG REQUIRED)
if(NOT TARGET ormcache::ormcache)
  message(FATAL_ERROR "no ormcache::ormcache")
endif()
foreach(component IN ITEMS redis memcached)
  if(TARGET ormcache::${component} OR ormcache_${component}_FOUND)
    message(FATAL_ERROR "loaded ${component} although pkg-config cannot find its library")
  endif()
endforeach()
message(STATUS "plain find_package done")
find_package(ormcache 0.1 CONFIG REQUIRED COMPONENTS redis)
]])
unset(ENV{PKG_CONFIG_LIBDIR})
unset(ENV{PKG_CONFIG_PATH})

# 2. A copy of the installation as built with -DORMCACHE_WITH_MEMCACHED=OFF.
set(reduced "${BINARY_DIR}/prefix_without_memcached")
file(REMOVE_RECURSE "${reduced}")
file(COPY "${PREFIX}/" DESTINATION "${reduced}")
file(REMOVE "${reduced}/${CMAKEDIR}/ormcache-memcached-targets.cmake")
check_case(
  component_not_installed "${reduced}"
  "component 'memcached' is not part of this installation: install ormcache built with \
-DORMCACHE_WITH_MEMCACHED=ON \\(which needs libmemcached-dev"
  [[
find_package(ormcache 0.1 CONFIG REQUIRED)
if(NOT TARGET ormcache::redis OR NOT ormcache_redis_FOUND)
  message(FATAL_ERROR "no ormcache::redis although it is installed and hiredis is found")
endif()
if(TARGET ormcache::memcached OR ormcache_memcached_FOUND)
  message(FATAL_ERROR "ormcache::memcached exists although it was not installed")
endif()
message(STATUS "plain find_package done")
find_package(ormcache 0.1 CONFIG REQUIRED COMPONENTS memcached)
]])
