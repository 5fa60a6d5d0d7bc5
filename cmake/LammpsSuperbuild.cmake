# Build Kokkos (static, PIC, C++17) and LAMMPS with our pair styles, out of the repository, in the cache.
include(ExternalProject)
include(ProcessorCount)
ProcessorCount(_ncpu)
if(_ncpu EQUAL 0)
  set(_ncpu 2)
endif()

set(_kokkos_variant "openmp")
set(_kokkos_args -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_OPENMP=ON)
# LibTorch decides the libstdc++ ABI (pip wheels before torch 2.6 use the old one); Kokkos is a static
# library linked into LAMMPS together with LibTorch, so it is compiled with the same flag
set(_compiler_args)
if(TORCH_CXX_FLAGS MATCHES "-D_GLIBCXX_USE_CXX11_ABI=0")
  list(APPEND _kokkos_args "-DCMAKE_CXX_FLAGS=-D_GLIBCXX_USE_CXX11_ABI=0")
endif()
if(DEQFORMER_CUDA)
  set(_kokkos_variant "cuda")
  list(APPEND _kokkos_args -DKokkos_ENABLE_CUDA=ON -DKokkos_ENABLE_CUDA_LAMBDA=ON)
  if(DEQFORMER_CUDA_ARCH)
    # Kokkos 3.4.01 knows GPUs up to AMPERE86: a newer architecture (HOPPER90) is built as AMPERE80,
    # whose PTX the driver compiles for the newer GPU at load time
    file(READ "${KOKKOS_SOURCE_DIR}/cmake/kokkos_arch.cmake" _arch_list)
    set(_arch "${DEQFORMER_CUDA_ARCH}")
    if(NOT _arch_list MATCHES "KOKKOS_ARCH_OPTION\\(${_arch} ")
      message(WARNING "Kokkos in ${KOKKOS_SOURCE_DIR} has no architecture ${_arch}; building for AMPERE80 "
                      "(PTX, JIT-compiled by the driver for the actual GPU). Use a newer Kokkos for native code.")
      set(_arch AMPERE80)
    endif()
    list(APPEND _kokkos_args -DKokkos_ARCH_${_arch}=ON)
  endif()
  # Kokkos CUDA code (Kokkos itself, and LAMMPS's KOKKOS package) is compiled through nvcc_wrapper
  set(_nvcc_wrapper "${KOKKOS_SOURCE_DIR}/bin/nvcc_wrapper")
  set(_compiler_args -DCMAKE_CXX_COMPILER=${_nvcc_wrapper})
endif()
set(KOKKOS_INSTALL_DIR "${DEQFORMER_CACHE_DIR}/install/kokkos-${_kokkos_variant}")
set(_lammps_build "${DEQFORMER_CACHE_DIR}/build/lammps-29Sep2021-${_kokkos_variant}")

set(_lammps_deps)
set(_lammps_kokkos_args -DPKG_KOKKOS=OFF)
if(DEQFORMER_KOKKOS)
  ExternalProject_Add(kokkos
    SOURCE_DIR "${KOKKOS_SOURCE_DIR}"
    BINARY_DIR "${DEQFORMER_CACHE_DIR}/build/kokkos-${_kokkos_variant}"
    INSTALL_DIR "${KOKKOS_INSTALL_DIR}"
    CMAKE_ARGS -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=17
               -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_SHARED_LIBS=OFF
               -DCMAKE_INSTALL_PREFIX=<INSTALL_DIR> -DCMAKE_INSTALL_LIBDIR=lib ${_launcher} ${_kokkos_args}
               ${_compiler_args}
    BUILD_COMMAND ninja -j ${_ncpu}
    INSTALL_COMMAND ninja install
    CMAKE_GENERATOR Ninja)
  set(_lammps_deps kokkos)
  set(_lammps_kokkos_args -DPKG_KOKKOS=ON -DEXTERNAL_KOKKOS=ON -DKokkos_DIR=${KOKKOS_INSTALL_DIR}/lib/cmake/Kokkos)
endif()

# LAMMPS's own unit tests are not built here (ENABLE_TESTING would build hundreds of test programs);
# tests/lammps builds just the force-style harness from this source against this liblammps.so
set(_lammps_test_args -DENABLE_TESTING=OFF)

ExternalProject_Add(lammps
  DEPENDS ${_lammps_deps}
  SOURCE_DIR "${LAMMPS_SOURCE_DIR}"
  SOURCE_SUBDIR cmake
  BINARY_DIR "${_lammps_build}"
  # re-install the pair style sources on every build (copy-if-different, so unchanged files keep their time)
  PATCH_COMMAND ""
  CMAKE_ARGS -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DBUILD_MPI=ON -DBUILD_OMP=ON
             -DLAMMPS_EXCEPTIONS=ON -DPKG_MOLECULE=ON -DPKG_PLUGIN=ON -DPKG_EXTRA-PAIR=OFF
             -DTorch_DIR=${Torch_DIR} ${_launcher} ${_lammps_kokkos_args} ${_lammps_test_args} ${_compiler_args}
  BUILD_COMMAND ninja -j ${_ncpu}
  INSTALL_COMMAND ""
  BUILD_ALWAYS ON
  # declared so that Ninja knows who makes the files the tests link to (needed on a cold cache)
  BUILD_BYPRODUCTS "${_lammps_build}/liblammps.so" "${_lammps_build}/lmp"
  CMAKE_GENERATOR Ninja)
ExternalProject_Add_Step(lammps install_pair_style
  COMMAND "${CMAKE_SOURCE_DIR}/lammps_patch/patch_lammps.sh" "${LAMMPS_SOURCE_DIR}"
  DEPENDEES download
  DEPENDERS configure
  ALWAYS ON)

# build/bin/lmp and build/lib/liblammps.so point into the cache
add_custom_target(lammps_links ALL
  COMMAND ${CMAKE_COMMAND} -E make_directory "${CMAKE_BINARY_DIR}/bin"
  COMMAND ${CMAKE_COMMAND} -E create_symlink "${_lammps_build}/lmp" "${CMAKE_BINARY_DIR}/bin/lmp"
  DEPENDS lammps)
set(DEQFORMER_LAMMPS_BUILD_DIR "${_lammps_build}" CACHE INTERNAL "")
set(DEQFORMER_LAMMPS_SOURCE_DIR "${LAMMPS_SOURCE_DIR}" CACHE INTERNAL "")
