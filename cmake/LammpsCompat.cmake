# Compatibility build (DEQFORMER_COMPAT_LAMMPS=ON): the CPU pair style against current LAMMPS.
#   lammps 20250204+dfsg.1-2 (trixie) = LAMMPS stable 4Feb2025, no KOKKOS, no OpenMP,
#   MPI, shared library, MOLECULE + PLUGIN, patched with lammps_patch/patch_lammps.sh.
# Source: ${DEQFORMER_CACHE_DIR}/lammps-4Feb2025, build: ${DEQFORMER_CACHE_DIR}/build/lammps-4Feb2025-cpu.
# tests/lammps builds a second test executable against it (ctest label "compat").
include(ExternalProject)
include("${CMAKE_CURRENT_LIST_DIR}/pinned-sources.cmake")

set(_compat_suite trixie)
set(_compat_orig "lammps_20250204+dfsg.1.orig.tar.xz")
set(_compat_src "${DEQFORMER_CACHE_DIR}/src/${_compat_suite}")
set(LAMMPS_COMPAT_SOURCE_DIR "${DEQFORMER_CACHE_DIR}/lammps-4Feb2025")
set(_compat_build "${DEQFORMER_CACHE_DIR}/build/lammps-4Feb2025-cpu")

if(NOT EXISTS "${LAMMPS_COMPAT_SOURCE_DIR}/.unpacked")
  if(EXISTS "${_compat_src}/${_compat_orig}")
    file(SHA256 "${_compat_src}/${_compat_orig}" _have)
  endif()
  if(NOT _have STREQUAL DEQFORMER_COMPAT_LAMMPS_ORIG_SHA256)
    message(STATUS "Fetching the LAMMPS 4Feb2025 source tarball (Debian ${_compat_suite}) into ${_compat_src}")
    # only the upstream tarball: bookworm's apt-get source cannot parse trixie's .dsc. Whatever Debian
    # revision trixie has now (the pin was taken from ${DEQFORMER_COMPAT_LAMMPS_DEBVER}): a new revision
    # keeps the tarball, a new upstream version fails the SHA256 pin below
    execute_process(COMMAND "${CMAKE_SOURCE_DIR}/scripts/fetch-debian-sources.sh" --orig-only
                            "${DEQFORMER_CACHE_DIR}" ${_compat_suite} lammps
                    RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "Could not fetch ${_compat_orig} (see above). Is the Debian archive reachable?")
    endif()
    file(SHA256 "${_compat_src}/${_compat_orig}" _have)
    if(NOT _have STREQUAL DEQFORMER_COMPAT_LAMMPS_ORIG_SHA256)
      message(FATAL_ERROR "${_compat_src}/${_compat_orig}: missing or SHA256 '${_have}' differs from the pinned "
                          "${DEQFORMER_COMPAT_LAMMPS_ORIG_SHA256} (lammps ${DEQFORMER_COMPAT_LAMMPS_DEBVER}); has "
                          "trixie moved to another LAMMPS version?")
    endif()
  endif()
  message(STATUS "Unpacking LAMMPS 4Feb2025 into ${LAMMPS_COMPAT_SOURCE_DIR}")
  file(REMOVE_RECURSE "${LAMMPS_COMPAT_SOURCE_DIR}")
  file(MAKE_DIRECTORY "${LAMMPS_COMPAT_SOURCE_DIR}")
  execute_process(COMMAND tar xf "${_compat_src}/${_compat_orig}" --strip-components=1 -C "${LAMMPS_COMPAT_SOURCE_DIR}"
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "unpacking ${_compat_orig} failed")
  endif()
  file(TOUCH "${LAMMPS_COMPAT_SOURCE_DIR}/.unpacked")
endif()

if(NOT _ncpu)    # set by LammpsSuperbuild.cmake unless DEQFORMER_BUILD_LAMMPS=OFF
  include(ProcessorCount)
  ProcessorCount(_ncpu)
  if(_ncpu EQUAL 0)
    set(_ncpu 2)
  endif()
endif()

# after the main LAMMPS (when there is one): the two builds would only compete for the same cores
set(_compat_deps)
if(TARGET lammps)
  set(_compat_deps lammps)
endif()
ExternalProject_Add(lammps_compat
  DEPENDS ${_compat_deps}
  SOURCE_DIR "${LAMMPS_COMPAT_SOURCE_DIR}"
  SOURCE_SUBDIR cmake
  BINARY_DIR "${_compat_build}"
  PATCH_COMMAND ""
  CMAKE_ARGS -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DBUILD_MPI=ON
             -DBUILD_OMP=OFF -DPKG_MOLECULE=ON -DPKG_PLUGIN=ON -DPKG_KOKKOS=OFF -DPKG_OPENMP=OFF
             -DENABLE_TESTING=OFF -DBUILD_TOOLS=OFF -DBUILD_LAMMPS_GUI=OFF -DWITH_JPEG=OFF -DWITH_PNG=OFF
             -DWITH_GZIP=OFF -DWITH_FFMPEG=OFF -DWITH_CURL=OFF
             -DTorch_DIR=${Torch_DIR} ${_launcher}
  BUILD_COMMAND ninja -j ${_ncpu}
  BUILD_BYPRODUCTS "${_compat_build}/liblammps.so" "${_compat_build}/lmp"
  INSTALL_COMMAND ""
  BUILD_ALWAYS ON
  CMAKE_GENERATOR Ninja)
ExternalProject_Add_Step(lammps_compat install_pair_style
  COMMAND "${CMAKE_SOURCE_DIR}/lammps_patch/patch_lammps.sh" "${LAMMPS_COMPAT_SOURCE_DIR}"
  DEPENDEES download
  DEPENDERS configure
  ALWAYS ON)

# build/bin/lmp-4Feb2025 points into the cache
add_custom_target(lammps_compat_links ALL
  COMMAND ${CMAKE_COMMAND} -E make_directory "${CMAKE_BINARY_DIR}/bin"
  COMMAND ${CMAKE_COMMAND} -E create_symlink "${_compat_build}/lmp" "${CMAKE_BINARY_DIR}/bin/lmp-4Feb2025"
  DEPENDS lammps_compat)
set(DEQFORMER_COMPAT_BUILD_DIR "${_compat_build}" CACHE INTERNAL "")
set(DEQFORMER_COMPAT_SOURCE_DIR "${LAMMPS_COMPAT_SOURCE_DIR}" CACHE INTERNAL "")
