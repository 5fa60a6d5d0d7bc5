# DEQFORMER_PLUGIN=ON: lammps_patch/plugin (deqformerplugin.so) built the way a user builds it, against the
# superbuild's LAMMPS 29Sep2021 source tree and build folder (PLUGIN package, shared library); ctest
# loads it into that lmp with `plugin load` (tests/plugin).
include(ExternalProject)
# one LAMMPS-sized build at a time on small machines: after the compat build when there is one
set(_plugin_deps lammps)
if(TARGET lammps_compat)
  list(APPEND _plugin_deps lammps_compat)
endif()
set(DEQFORMER_PLUGIN_BUILD_DIR "${CMAKE_BINARY_DIR}/plugin-29Sep2021")
ExternalProject_Add(deqformer_plugin
  DEPENDS ${_plugin_deps}
  SOURCE_DIR "${CMAKE_SOURCE_DIR}/lammps_patch/plugin"
  BINARY_DIR "${DEQFORMER_PLUGIN_BUILD_DIR}"
  CMAKE_ARGS -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAMMPS_SOURCE_DIR=${DEQFORMER_LAMMPS_SOURCE_DIR}
             -DLAMMPS_BUILD_DIR=${DEQFORMER_LAMMPS_BUILD_DIR} -DTorch_DIR=${Torch_DIR} ${_launcher}
  BUILD_COMMAND ninja -j ${_ncpu}
  BUILD_BYPRODUCTS "${DEQFORMER_PLUGIN_BUILD_DIR}/deqformerplugin.so"
  INSTALL_COMMAND ""
  BUILD_ALWAYS ON
  CMAKE_GENERATOR Ninja)

# Optionally also against another LAMMPS without the deqformer styles (a plain build with PLUGIN and
# shared libs, e.g. an unpatched LAMMPS 4Feb2025): ctest plugin_plain loads the plugin there.
set(DEQFORMER_PLUGIN_LAMMPS_SOURCE_DIR "" CACHE PATH "Extra LAMMPS source tree (without deqformer) for the plugin test")
set(DEQFORMER_PLUGIN_LAMMPS_BUILD_DIR "" CACHE PATH "Its CMake build folder (PKG_PLUGIN=ON, BUILD_SHARED_LIBS=ON)")
if(DEQFORMER_PLUGIN_LAMMPS_SOURCE_DIR AND DEQFORMER_PLUGIN_LAMMPS_BUILD_DIR)
  set(DEQFORMER_PLUGIN_PLAIN_BUILD_DIR "${CMAKE_BINARY_DIR}/plugin-plain")
  ExternalProject_Add(deqformer_plugin_plain
    DEPENDS deqformer_plugin
    SOURCE_DIR "${CMAKE_SOURCE_DIR}/lammps_patch/plugin"
    BINARY_DIR "${DEQFORMER_PLUGIN_PLAIN_BUILD_DIR}"
    CMAKE_ARGS -G Ninja -DCMAKE_BUILD_TYPE=Release -DLAMMPS_SOURCE_DIR=${DEQFORMER_PLUGIN_LAMMPS_SOURCE_DIR}
               -DLAMMPS_BUILD_DIR=${DEQFORMER_PLUGIN_LAMMPS_BUILD_DIR} -DTorch_DIR=${Torch_DIR} ${_launcher}
    BUILD_COMMAND ninja -j ${_ncpu}
    BUILD_BYPRODUCTS "${DEQFORMER_PLUGIN_PLAIN_BUILD_DIR}/deqformerplugin.so"
    INSTALL_COMMAND ""
    BUILD_ALWAYS ON
    CMAKE_GENERATOR Ninja)
endif()
