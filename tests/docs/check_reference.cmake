# Keeps docs/reference.md, the one normative description of the public surface, current with
# the code, and keeps the tree from citing documents that users never get. No compiler: it
# only reads files.
#
#   cmake -DSOURCE_DIR=<ormcache source root> -P tests/docs/check_reference.cmake
#
# It fails, naming the missing item and the file it comes from, when:
#  (a) a file under README.md, CMakeLists.txt, docs/, include/, tests/, cmake/, examples/,
#      bench/ or ports/ cites the project-internal contract notes (API, FILL-PROTOCOL or STYLE
#      ".md") or "the shared folder" they lived in;
#  (b) a public header, include/ormcache/*.hpp or include/ormcache/backends/*.hpp, is not
#      named in docs/reference.md (as "ormcache/<name>.hpp");
#  (c) a member of CacheStats, CacheConfig, DatabaseConfig or Options (parsed from the struct
#      bodies of their headers) is not mentioned in docs/reference.md as `name`, `.name` or
#      `Type::name`;
#  (d) a CacheConfig::arguments key a backend reads (an entry `field("...", ...)` of the
#      OptionTable of its options struct, in include/ormcache/backends/<backend>.hpp) is not
#      documented as `key` in the section of docs/reference.md that follows
#      <a id="arguments-<backend>">; keys of tables in include/ormcache/detail/ (any depth) must
#      appear somewhere in docs/reference.md. A header that specializes OptionTable but whose
#      entries the check cannot find fails too (the check's parser needs updating);
#  (e) one of the anchors <a id="rule-1"> ... <a id="rule-9"> (the cache rules that tests and
#      docs cite by number) is missing from docs/reference.md;
#  (f) a header named in docs/*.md as `detail/...hpp` or `backends/...hpp` (the architecture
#      map names files) does not exist under include/ormcache/.

cmake_minimum_required(VERSION 3.21)

if(NOT SOURCE_DIR)
  get_filename_component(SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
endif()
set(reference_file "${SOURCE_DIR}/docs/reference.md")

set(problems "")
# problem(<text>...): the pieces are joined (so they must not contain semicolons).
macro(problem)
  string(CONCAT _problem ${ARGN})
  list(APPEND problems "${_problem}")
endmacro()

if(EXISTS "${reference_file}")
  file(READ "${reference_file}" reference)
else()
  set(reference "")
  problem("docs/reference.md: missing (the reference of the public surface)")
endif()

# ---- (a) no citation of documents users do not have ---------------------------------------

set(scanned "")
foreach(top README.md CMakeLists.txt)
  if(EXISTS "${SOURCE_DIR}/${top}")
    list(APPEND scanned "${SOURCE_DIR}/${top}")
  endif()
endforeach()
foreach(dir docs include tests cmake examples bench ports)
  file(GLOB_RECURSE found LIST_DIRECTORIES false "${SOURCE_DIR}/${dir}/*")
  list(APPEND scanned ${found})
endforeach()
list(REMOVE_ITEM scanned "${CMAKE_CURRENT_LIST_FILE}")

# Lower-cased text with runs of white space and comment leaders folded into one space, so that
# a citation broken over two comment lines is still found.
set(internal_notes "API.md" "FILL-PROTOCOL" "STYLE.md")
foreach(path IN LISTS scanned)
  if(path MATCHES "\\.(png|jpg|jpeg|gif|ico|db|sqlite)$")
    continue()
  endif()
  file(RELATIVE_PATH rel "${SOURCE_DIR}" "${path}")
  file(READ "${path}" text)
  string(TOLOWER "${text}" text)
  string(REGEX REPLACE "[ \t\r\n]+((//[/!]?|#+|\\*|--)[ \t]*)?" " " text "${text}")
  foreach(note IN LISTS internal_notes)
    string(TOLOWER "${note}" needle)
    string(REPLACE "." "\\." needle "${needle}")
    if(text MATCHES "(^|[^a-z0-9_])${needle}")
      problem("${rel}: cites ${note}, a project-internal note users never get. Cite "
              "docs/reference.md (e.g. \"docs/reference.md, cache rule 6\") instead")
    endif()
  endforeach()
  if(text MATCHES "shared folder")
    problem("${rel}: cites \"the shared folder\", which users never get. Cite "
            "docs/reference.md instead")
  endif()
endforeach()

# ---- (b) every public header is named -----------------------------------------------------

file(GLOB headers "${SOURCE_DIR}/include/ormcache/*.hpp"
     "${SOURCE_DIR}/include/ormcache/backends/*.hpp")
list(SORT headers)
foreach(path IN LISTS headers)
  file(RELATIVE_PATH rel "${SOURCE_DIR}/include" "${path}")
  string(FIND "${reference}" "${rel}" at)
  if(at EQUAL -1)
    problem("include/${rel}: public header not named in docs/reference.md (write \"${rel}\")")
  endif()
endforeach()

# ---- (c) every member of the configuration and stats aggregates is documented ------------

function(struct_members header struct out_var)
  set(members "")
  set(path "${SOURCE_DIR}/include/ormcache/${header}")
  if(NOT EXISTS "${path}")
    set(${out_var} "<missing header>" PARENT_SCOPE)
    return()
  endif()
  file(READ "${path}" text)
  string(REGEX MATCH "struct[ \t\r\n]+${struct}[ \t\r\n]*{" head "${text}")
  if(NOT head)
    set(${out_var} "<no struct>" PARENT_SCOPE)
    return()
  endif()
  string(FIND "${text}" "${head}" start)
  string(SUBSTRING "${text}" ${start} -1 text)
  string(FIND "${text}" "\n};" end)
  if(end EQUAL -1)
    set(${out_var} "<no struct>" PARENT_SCOPE)
    return()
  endif()
  string(SUBSTRING "${text}" 0 ${end} body)
  # One list item per line (declarations end in ';', CMake's list separator).
  string(REPLACE "\\" "/" body "${body}")
  string(REPLACE ";" "@SEMI@" body "${body}")
  string(REPLACE "\n" ";" lines "${body}")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "//.*$" "" line "${line}")
    # Drop template arguments, innermost first: std::function<void(const X&)> -> std::function.
    while(line MATCHES "<[^<>]*>")
      string(REGEX REPLACE "<[^<>]*>" "" line "${line}")
    endwhile()
    if(line MATCHES "^[ \t]*(using|friend|return|static_assert|struct|class|enum|typedef|template)[ \t]")
      continue()
    endif()
    if(line MATCHES "^[ \t]*([A-Za-z_][A-Za-z0-9_:]*[ \t*&]+)+([A-Za-z_][A-Za-z0-9_]*)[ \t]*(=|{|@SEMI@)")
      list(APPEND members "${CMAKE_MATCH_2}")
    endif()
  endforeach()
  set(${out_var} "${members}" PARENT_SCOPE)
endfunction()

foreach(pair "cache_stats.hpp:CacheStats" "cache_config.hpp:CacheConfig"
             "database_config.hpp:DatabaseConfig" "options.hpp:Options")
  string(REPLACE ":" ";" pair "${pair}")
  list(GET pair 0 header)
  list(GET pair 1 struct)
  struct_members("${header}" "${struct}" members)
  if(members MATCHES "^<" OR NOT members)
    problem("include/ormcache/${header}: cannot find the members of struct ${struct} "
            "(the check's parser needs updating)")
    continue()
  endif()
  foreach(member IN LISTS members)
    if(NOT reference MATCHES "`(\\.|${struct}::)?${member}`")
      problem("include/ormcache/${header}: ${struct}::${member} is not documented in "
              "docs/reference.md (write `${member}`)")
    endif()
  endforeach()
endforeach()

# ---- (d) every backend argument is documented in its backend's section --------------------

# The one table-driven reader (detail/cache/backend_arguments.hpp) reads exactly the entries of each
# options struct's table: field("name", &Options::member, ...) or field<Options>("name", ...).
set(argument_read_patterns "field(<[A-Za-z_:]+>)?\\([ \t\r\n]*\"([A-Za-z0-9_]+)\"")

function(argument_keys path out_var)
  file(READ "${path}" text)
  set(keys "")
  foreach(pattern IN LISTS argument_read_patterns)
    string(REGEX MATCHALL "${pattern}" reads "${text}")
    foreach(read IN LISTS reads)
      string(REGEX MATCH "\"([A-Za-z0-9_]+)\"" quoted "${read}")
      list(APPEND keys "${CMAKE_MATCH_1}")
    endforeach()
  endforeach()
  list(REMOVE_DUPLICATES keys)
  set(${out_var} "${keys}" PARENT_SCOPE)
endfunction()

file(GLOB backend_headers "${SOURCE_DIR}/include/ormcache/backends/*.hpp")
list(SORT backend_headers)
foreach(path IN LISTS backend_headers)
  get_filename_component(backend "${path}" NAME_WE)
  file(RELATIVE_PATH rel "${SOURCE_DIR}" "${path}")
  argument_keys("${path}" keys)
  if(NOT keys)
    file(READ "${path}" text)
    if(text MATCHES "struct[ \t]+OptionTable<")
      problem("${rel}: specializes OptionTable but the check finds no field(\"...\") entry "
              "(the check's parser needs updating)")
    endif()
    continue()
  endif()
  string(FIND "${reference}" "id=\"arguments-${backend}\"" at)
  if(at EQUAL -1)
    string(REPLACE ";" ", " key_text "${keys}")
    problem("${rel}: the ${backend} backend reads CacheConfig::arguments (${key_text}) but "
            "docs/reference.md has no section <a id=\"arguments-${backend}\">")
    continue()
  endif()
  # The section runs from the anchor to the next heading.
  string(SUBSTRING "${reference}" ${at} -1 section)
  string(FIND "${section}" "\n#" next)
  if(NOT next EQUAL -1)
    string(SUBSTRING "${section}" 0 ${next} section)
  endif()
  foreach(key IN LISTS keys)
    string(FIND "${section}" "`${key}`" found)
    if(found EQUAL -1)
      problem("${rel}: argument '${key}' of the ${backend} backend is not documented in "
              "docs/reference.md, section <a id=\"arguments-${backend}\"> (write `${key}`)")
    endif()
  endforeach()
endforeach()

file(GLOB_RECURSE detail_headers "${SOURCE_DIR}/include/ormcache/detail/*.hpp")
list(SORT detail_headers)
foreach(path IN LISTS detail_headers)
  file(RELATIVE_PATH rel "${SOURCE_DIR}" "${path}")
  argument_keys("${path}" keys)
  foreach(key IN LISTS keys)
    string(FIND "${reference}" "`${key}`" found)
    if(found EQUAL -1)
      problem("${rel}: argument '${key}' is read from CacheConfig::arguments but not "
              "documented in docs/reference.md (write `${key}`)")
    endif()
  endforeach()
endforeach()

# ---- (e) the cache rules keep their numbers ------------------------------------------------

foreach(n RANGE 1 9)
  string(FIND "${reference}" "id=\"rule-${n}\"" at)
  if(at EQUAL -1)
    problem("docs/reference.md: no anchor <a id=\"rule-${n}\"> for cache rule ${n}")
  endif()
endforeach()

# ---- (f) the headers the docs name exist ---------------------------------------------------

file(GLOB pages "${SOURCE_DIR}/docs/*.md")
list(SORT pages)
foreach(page IN LISTS pages)
  file(RELATIVE_PATH rel "${SOURCE_DIR}" "${page}")
  file(READ "${page}" text)
  string(REGEX MATCHALL "`(detail|backends)/[A-Za-z0-9_/]+\\.hpp" named "${text}")
  list(REMOVE_DUPLICATES named)
  foreach(item IN LISTS named)
    string(SUBSTRING "${item}" 1 -1 header)
    if(NOT EXISTS "${SOURCE_DIR}/include/ormcache/${header}")
      problem("${rel}: names `${header}`, which is not a file under include/ormcache/")
    endif()
  endforeach()
endforeach()

# ---- report --------------------------------------------------------------------------------

list(LENGTH problems count)
if(count GREATER 0)
  foreach(p IN LISTS problems)
    message("check_reference: ${p}")
  endforeach()
  message(FATAL_ERROR "check_reference: ${count} problem(s). docs/reference.md is the one "
                      "normative description of the public surface: keep it current")
endif()
message(STATUS "check_reference: docs/reference.md covers every public header, configuration "
               "field and backend argument; no internal note is cited")
