# vcpkg overlay port for ormcache (header-only).
#
#   vcpkg install ormcache[redis,memcached,postgresql] --overlay-ports=<checkout>/ports
#
# then in CMake:  find_package(ormcache CONFIG REQUIRED COMPONENTS redis memcached postgresql)
#
# NOTE: vcpkg is not available on the machine this port was written on, so it has not been
# run through vcpkg; the CMake install it drives is exercised by tests/cmake/find_package_test.
#
# The source is the checkout this port lives in. For a registry port, replace the next line
# with:
#   vcpkg_from_git(OUT_SOURCE_PATH SOURCE_PATH URL <repository url> REF <commit sha>)
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

# Header-only: nothing differs between debug and release, so configure once.
set(VCPKG_BUILD_TYPE release)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
    FEATURES
        redis     ORMCACHE_WITH_REDIS
        memcached ORMCACHE_WITH_MEMCACHED
        postgresql ORMCACHE_WITH_POSTGRESQL
)

# hiredis, libmemcached and libpq are located through pkg-config (their .pc files are installed
# by the vcpkg ports); the core needs no pkg-config.
set(PKGCONFIG_OPTIONS "")
if("redis" IN_LIST FEATURES OR "memcached" IN_LIST FEATURES OR "postgresql" IN_LIST FEATURES)
    vcpkg_find_acquire_program(PKGCONFIG)
    set(PKGCONFIG_OPTIONS "-DPKG_CONFIG_EXECUTABLE=${PKGCONFIG}")
endif()

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        ${FEATURE_OPTIONS}
        ${PKGCONFIG_OPTIONS}
        -DORMCACHE_BUILD_TESTS=OFF
        -DORMCACHE_BUILD_EXAMPLES=OFF
        -DORMCACHE_BUILD_BENCHMARKS=OFF
        -DORMCACHE_INSTALL=ON
)
vcpkg_cmake_install()

# CMakeLists.txt installs the package into share/cmake/ormcache (arch independent); vcpkg
# wants it in share/ormcache.
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/ormcache)
vcpkg_fixup_pkgconfig()

# Nothing is compiled, so there are no debug artifacts to keep (and no lib/ directory).
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
