# Optional dependencies that can never stop the configure step, and a switch per dependency that
# makes them required.
#
#   deepmpi_optional_package(<SWITCH> <Package> "<what it is for>" "<how to install>" [find_package args])
#
# A package's own CMake files can fail hard even under find_package(... QUIET): Debian's
# dnnl-config.cmake calls find_package(OpenCL REQUIRED), and without ocl-icd-opencl-dev the whole
# configure step stopped. So the package is first found in a child CMake run (a throw-away
# project under <build>/probe/<Package>); only when that succeeds is it found here. When it fails,
# one line says what is left out and why, and <Package> is treated as not found.
# -DDEEPMPI_REQUIRE_<SWITCH>=ON turns "left out" into a configure error (CI sets every switch, so a
# build that silently lost a dependency cannot pass CI).
#
# Sets DEEPMPI_HAVE_<SWITCH> (ON/OFF) in the caller's scope; the package's targets and variables
# come from the caller's own find_package (this is a macro).
macro(deepmpi_optional_package switch pkg what install)
  option(DEEPMPI_REQUIRE_${switch} "Stop the configure step when ${pkg} (${what}) cannot be used" OFF)
  set(DEEPMPI_HAVE_${switch} OFF)
  set(_dmpi_reason "")
  # A probe that succeeded once is not repeated (its cache entry holds the result); a failed
  # probe is repeated at every configure, so installing the package is enough.
  if(NOT DEEPMPI_PROBE_${switch}_OK)
    set(_dmpi_dir "${CMAKE_BINARY_DIR}/probe/${pkg}")
    file(REMOVE_RECURSE "${_dmpi_dir}")
    string(REPLACE ";" " " _dmpi_args "${ARGN}")
    file(WRITE "${_dmpi_dir}/CMakeLists.txt"
      "cmake_minimum_required(VERSION 3.25)\nproject(deepmpi_probe LANGUAGES C CXX)\n"
      "find_package(${pkg} ${_dmpi_args} REQUIRED)\n")
    execute_process(
      # the configure step's own generator and build program: a machine with Ninja and no make
      # (a fresh minimal Debian root with README's packages) failed the probe of every package
      # under CMake's default generator, Unix Makefiles (found by tests/fresh)
      COMMAND ${CMAKE_COMMAND} -S "${_dmpi_dir}" -B "${_dmpi_dir}/build" -G "${CMAKE_GENERATOR}"
              "-DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
              "-DCMAKE_C_COMPILER=${CMAKE_C_COMPILER}" "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
              "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH}" "-DCMAKE_MODULE_PATH=${CMAKE_MODULE_PATH}"
      RESULT_VARIABLE _dmpi_rc OUTPUT_QUIET ERROR_VARIABLE _dmpi_err)
    if(_dmpi_rc EQUAL 0)
      set(DEEPMPI_PROBE_${switch}_OK ON CACHE INTERNAL "${pkg} configured in a child CMake run")
    else()
      # the library's own first complaint, on one line
      string(REGEX MATCH "Could NOT find [^\n]*" _dmpi_reason "${_dmpi_err}")
      if(NOT _dmpi_reason)
        string(REGEX MATCH "CMake Error[^\n]*\n[ ]*[^\n]+" _dmpi_reason "${_dmpi_err}")
        string(REGEX REPLACE "^CMake Error[^\n]*\n[ ]*" "" _dmpi_reason "${_dmpi_reason}")
      endif()
      if(NOT _dmpi_reason)
        set(_dmpi_reason "its CMake package failed to configure (exit ${_dmpi_rc})")
      endif()
    endif()
  endif()
  if(DEEPMPI_PROBE_${switch}_OK)
    find_package(${pkg} ${ARGN} QUIET)
    if(${pkg}_FOUND)
      set(DEEPMPI_HAVE_${switch} ON)
    else()
      set(_dmpi_reason "find_package(${pkg}) did not find it")
      unset(DEEPMPI_PROBE_${switch}_OK CACHE)
    endif()
  endif()
  if(NOT DEEPMPI_HAVE_${switch})
    set(_dmpi_line "${pkg} (${what}) is left out: ${_dmpi_reason}. Install it with: ${install}")
    if(DEEPMPI_REQUIRE_${switch})
      message(FATAL_ERROR "deepmpi: ${_dmpi_line} (-DDEEPMPI_REQUIRE_${switch}=ON makes this an error)")
    endif()
    message(NOTICE "deepmpi: warning: ${_dmpi_line} (-DDEEPMPI_REQUIRE_${switch}=ON makes this an error)")
  endif()
endmacro()
