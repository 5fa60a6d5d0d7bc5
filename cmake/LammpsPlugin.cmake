# DEQFORMER_PLUGIN=ON: lammps_patch/plugin (deqformerplugin.so) built the way a user builds it, against the
# superbuild's LAMMPS 29Sep2021 source tree and build folder (PLUGIN package, shared library); ctest
# loads it into that lmp with `plugin load` (tests/plugin).
include(ExternalProject)

# deqformer_plugin_build(TARGET DIR LAMMPS_SRC LAMMPS_BUILD DEPENDS BUILD_TYPE [extra CMake args...]):
# lammps_patch/plugin configured and built in DIR against that LAMMPS, giving DIR/deqformerplugin.so
function(deqformer_plugin_build target dir lammps_src lammps_build deps build_type)
  ExternalProject_Add(${target}
    DEPENDS ${deps}
    SOURCE_DIR "${CMAKE_SOURCE_DIR}/lammps_patch/plugin"
    BINARY_DIR "${dir}"
    CMAKE_ARGS -G Ninja -DCMAKE_BUILD_TYPE=${build_type} -DLAMMPS_SOURCE_DIR=${lammps_src}
               -DLAMMPS_BUILD_DIR=${lammps_build} -DTorch_DIR=${Torch_DIR} ${_launcher} ${ARGN}
    BUILD_COMMAND ninja -j ${_ncpu}
    BUILD_BYPRODUCTS "${dir}/deqformerplugin.so"
    INSTALL_COMMAND ""
    BUILD_ALWAYS ON
    CMAKE_GENERATOR Ninja)
endfunction()

# one LAMMPS-sized build at a time on small machines: after the compat build when there is one
set(_plugin_deps lammps)
if(TARGET lammps_compat)
  list(APPEND _plugin_deps lammps_compat)
endif()
set(DEQFORMER_PLUGIN_BUILD_DIR "${CMAKE_BINARY_DIR}/plugin-29Sep2021")
deqformer_plugin_build(deqformer_plugin "${DEQFORMER_PLUGIN_BUILD_DIR}" "${DEQFORMER_LAMMPS_SOURCE_DIR}"
                       "${DEQFORMER_LAMMPS_BUILD_DIR}" "${_plugin_deps}" Release)

# DEQFORMER_SANITIZE=ON: the same plugin compiled with AddressSanitizer; ctest plugin_asan loads it into the
# (uninstrumented) lmp with libasan preloaded, so the LAMMPS layer of the CPU style runs under ASan
if(DEQFORMER_SANITIZE)
  set(DEQFORMER_PLUGIN_ASAN_BUILD_DIR "${CMAKE_BINARY_DIR}/plugin-29Sep2021-asan")
  deqformer_plugin_build(deqformer_plugin_asan "${DEQFORMER_PLUGIN_ASAN_BUILD_DIR}" "${DEQFORMER_LAMMPS_SOURCE_DIR}"
                         "${DEQFORMER_LAMMPS_BUILD_DIR}" deqformer_plugin RelWithDebInfo
                         "-DCMAKE_CXX_FLAGS=-fsanitize=address -fno-omit-frame-pointer"
                         "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address")
endif()

# Optionally also against another LAMMPS without the deqformer styles (a plain build with PLUGIN and
# shared libs, e.g. an unpatched LAMMPS 4Feb2025): ctest plugin_plain loads the plugin there.
set(DEQFORMER_PLUGIN_LAMMPS_SOURCE_DIR "" CACHE PATH "Extra LAMMPS source tree (without deqformer) for the plugin test")
set(DEQFORMER_PLUGIN_LAMMPS_BUILD_DIR "" CACHE PATH "Its CMake build folder (PKG_PLUGIN=ON, BUILD_SHARED_LIBS=ON)")
if(DEQFORMER_PLUGIN_LAMMPS_SOURCE_DIR AND DEQFORMER_PLUGIN_LAMMPS_BUILD_DIR)
  set(DEQFORMER_PLUGIN_PLAIN_BUILD_DIR "${CMAKE_BINARY_DIR}/plugin-plain")
  deqformer_plugin_build(deqformer_plugin_plain "${DEQFORMER_PLUGIN_PLAIN_BUILD_DIR}"
                         "${DEQFORMER_PLUGIN_LAMMPS_SOURCE_DIR}" "${DEQFORMER_PLUGIN_LAMMPS_BUILD_DIR}"
                         deqformer_plugin Release)
endif()
