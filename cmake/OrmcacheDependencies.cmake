# Dependency lookup with a message that names the Debian package to install.
#
# CMake's own "Could not find a package configuration file provided by ..." lists search
# paths but not what to install, which is the question a new contributor actually has.
# Macros, not functions: find_package() results (<Pkg>_FOUND, versions) must land in the
# caller's scope.
include_guard(GLOBAL)

# ormcache_find_package(<Package> DEBIAN <apt-package> [find_package args...])
macro(ormcache_find_package _ormcache_pkg)
  cmake_parse_arguments(_ormcache_fp "" "DEBIAN" "" ${ARGN})
  find_package(${_ormcache_pkg} ${_ormcache_fp_UNPARSED_ARGUMENTS} QUIET)
  if(NOT ${_ormcache_pkg}_FOUND)
    message(FATAL_ERROR
      "ormcache: required dependency '${_ormcache_pkg}' was not found "
      "(find_package(${_ormcache_pkg} ${_ormcache_fp_UNPARSED_ARGUMENTS})).\n"
      "On Debian/Ubuntu install it with:  sudo apt-get install ${_ormcache_fp_DEBIAN}\n"
      "(scripts/setup-debian.sh installs every dependency), or add its install prefix to "
      "CMAKE_PREFIX_PATH.")
  endif()
endmacro()

# ormcache_pkg_check_module(<prefix> <module> DEBIAN <apt-package> OPTION <ORMCACHE_WITH_x>)
# Creates the PkgConfig::<prefix> imported target.
macro(ormcache_pkg_check_module _ormcache_prefix _ormcache_module)
  cmake_parse_arguments(_ormcache_pc "" "DEBIAN;OPTION" "" ${ARGN})
  find_package(PkgConfig QUIET)
  if(NOT PKG_CONFIG_FOUND)
    message(FATAL_ERROR
      "ormcache: pkg-config is needed to find ${_ormcache_module} (${_ormcache_pc_OPTION}=ON).\n"
      "On Debian/Ubuntu install it with:  sudo apt-get install pkg-config\n"
      "or configure with -D${_ormcache_pc_OPTION}=OFF.")
  endif()
  pkg_check_modules(${_ormcache_prefix} QUIET IMPORTED_TARGET ${_ormcache_module})
  if(NOT ${_ormcache_prefix}_FOUND)
    message(FATAL_ERROR
      "ormcache: pkg-config module '${_ormcache_module}' was not found "
      "(needed because ${_ormcache_pc_OPTION}=ON).\n"
      "On Debian/Ubuntu install it with:  sudo apt-get install ${_ormcache_pc_DEBIAN}\n"
      "or configure with -D${_ormcache_pc_OPTION}=OFF to build without it.")
  endif()
endmacro()
