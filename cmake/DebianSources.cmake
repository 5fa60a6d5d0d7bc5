# Fetch and unpack the Debian source packages LAMMPS and Kokkos come from, once, into the cache.
#   lammps   20220106.git7586adbb6a+ds1-2 (bookworm) = LAMMPS stable 29Sep2021 update 2
#   trilinos 13.2.0-4 (bookworm): packages/kokkos = Kokkos 3.4.01 (Debian strips lib/kokkos from LAMMPS)
# The fetch script verifies every file against the signed Sources index and the .dsc SHA256 sums;
# here the two tarballs are also pinned by SHA256 so a changed archive is noticed.
set(DEQFORMER_LAMMPS_ORIG "lammps_20220106.git7586adbb6a+ds1.orig.tar.xz")
set(DEQFORMER_TRILINOS_ORIG "trilinos_13.2.0.orig.tar.gz")
set(_src "${DEQFORMER_CACHE_DIR}/src/bookworm")
set(LAMMPS_SOURCE_DIR "${DEQFORMER_CACHE_DIR}/lammps-29Sep2021")
set(KOKKOS_SOURCE_DIR "${DEQFORMER_CACHE_DIR}/kokkos-3.4.01")

include("${CMAKE_CURRENT_LIST_DIR}/pinned-sources.cmake")

function(deqformer_fetch_verify file sha)
  if(EXISTS "${_src}/${file}")
    file(SHA256 "${_src}/${file}" _have)
  endif()
  if(NOT _have STREQUAL sha)
    message(STATUS "Fetching Debian source packages into ${_src}")
    execute_process(COMMAND "${CMAKE_SOURCE_DIR}/scripts/fetch-debian-sources.sh"
                            "${DEQFORMER_CACHE_DIR}" bookworm lammps=${DEQFORMER_LAMMPS_DEBVER}
                            trilinos=${DEQFORMER_TRILINOS_DEBVER}
                    RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "Could not fetch the Debian source packages (see above). Is the Debian archive reachable?")
    endif()
    file(SHA256 "${_src}/${file}" _have)
    if(NOT _have STREQUAL sha)
      message(FATAL_ERROR "${_src}/${file}: SHA256 ${_have} differs from the pinned ${sha}")
    endif()
  endif()
endfunction()

if(NOT EXISTS "${LAMMPS_SOURCE_DIR}/.unpacked")
  deqformer_fetch_verify(${DEQFORMER_LAMMPS_ORIG} ${DEQFORMER_LAMMPS_ORIG_SHA256})
  message(STATUS "Unpacking LAMMPS into ${LAMMPS_SOURCE_DIR}")
  file(REMOVE_RECURSE "${LAMMPS_SOURCE_DIR}")
  file(MAKE_DIRECTORY "${LAMMPS_SOURCE_DIR}")
  execute_process(COMMAND tar xf "${_src}/${DEQFORMER_LAMMPS_ORIG}" --strip-components=1 -C "${LAMMPS_SOURCE_DIR}"
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "unpacking ${DEQFORMER_LAMMPS_ORIG} failed")
  endif()
  file(TOUCH "${LAMMPS_SOURCE_DIR}/.unpacked")
endif()
if(DEQFORMER_KOKKOS AND NOT EXISTS "${KOKKOS_SOURCE_DIR}/.unpacked")
  deqformer_fetch_verify(${DEQFORMER_TRILINOS_ORIG} ${DEQFORMER_TRILINOS_ORIG_SHA256})
  message(STATUS "Unpacking Kokkos 3.4.01 (trilinos packages/kokkos) into ${KOKKOS_SOURCE_DIR}")
  file(REMOVE_RECURSE "${KOKKOS_SOURCE_DIR}")
  file(MAKE_DIRECTORY "${KOKKOS_SOURCE_DIR}")
  execute_process(COMMAND tar xzf "${_src}/${DEQFORMER_TRILINOS_ORIG}" --strip-components=3
                          -C "${KOKKOS_SOURCE_DIR}" --wildcards "*/packages/kokkos/*"
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "unpacking Kokkos from ${DEQFORMER_TRILINOS_ORIG} failed")
  endif()
  file(TOUCH "${KOKKOS_SOURCE_DIR}/.unpacked")
endif()
