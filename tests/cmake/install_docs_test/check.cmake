# cmake -DSOURCE_DIR=<ormcache checkout> -DDOCDIR=<install prefix>/<CMAKE_INSTALL_DOCDIR>
#       -P check.cmake
#
# The install puts the user documentation where distributions look for it: README.md,
# LICENSE and every docs/*.md of the checkout (so a page added later, such as reference.md,
# is covered without editing this test), each identical to its source.
cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS SOURCE_DIR DOCDIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check.cmake: -D${var}=... is required")
  endif()
endforeach()

file(GLOB pages RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/docs/*.md")
if(NOT pages)
  message(FATAL_ERROR "no docs/*.md in ${SOURCE_DIR}: nothing to check")
endif()
foreach(source IN ITEMS README.md LICENSE ${pages})
  string(REGEX REPLACE "^docs/" "" installed "${source}")
  set(installed "${DOCDIR}/${installed}")
  if(NOT EXISTS "${installed}")
    message(FATAL_ERROR "${source} was not installed as ${installed}")
  endif()
  file(SHA256 "${SOURCE_DIR}/${source}" expected)
  file(SHA256 "${installed}" actual)
  if(NOT actual STREQUAL expected)
    message(FATAL_ERROR "${installed} differs from ${source}")
  endif()
  message(STATUS "installed: ${installed}")
endforeach()
