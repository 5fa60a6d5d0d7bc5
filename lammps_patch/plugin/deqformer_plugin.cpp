/* ----------------------------------------------------------------------
   deqformer as a LAMMPS plugin: `plugin load /path/to/deqformerplugin.so` registers
     pair_style deqformer, compute deqformer/solver, fix DEQFORMER/STATE
   and, when built against a LAMMPS with KOKKOS (host backends; lammps_patch/plugin/CMakeLists.txt),
     pair_style deqformer/kk (/kk/device, /kk/host), fix DEQFORMER/STATE/kk (/kk/device, /kk/host)
   in a LAMMPS built with the PLUGIN package (and as a shared library), without patching it.
   The plugin must be compiled against the headers of the same LAMMPS version and with the same
   integer sizes (LAMMPS_SMALLBIG, ...) as the LAMMPS it is loaded into (lammps_patch/plugin/CMakeLists.txt).
------------------------------------------------------------------------- */

#include "lammpsplugin.h"
#include "version.h"

#include "compute_deqformer_solver.h"
#include "fix_deqformer_state.h"
#include "pair_deqformer.h"

#ifdef DEQFORMER_PLUGIN_KOKKOS
#include "fix_deqformer_state_kokkos.h"
#include "pair_deqformer_kokkos.h"
#endif

using namespace LAMMPS_NS;

namespace {

Pair *make_pair(LAMMPS *lmp)
{
  return new PairDeqformer(lmp);
}

Compute *make_compute(LAMMPS *lmp, int narg, char **arg)
{
  return new ComputeDeqformerSolver(lmp, narg, arg);
}

Fix *make_fix(LAMMPS *lmp, int narg, char **arg)
{
  return new FixDeqformerState(lmp, narg, arg);
}

#ifdef DEQFORMER_PLUGIN_KOKKOS
// host backends only: LMPDeviceType is the host execution space, so /kk, /kk/device and /kk/host are
// the same class, as in a LAMMPS built with KOKKOS for the CPU
Pair *make_pair_kokkos(LAMMPS *lmp)
{
  return new PairDeqformerKokkos<LMPDeviceType>(lmp);
}

Fix *make_fix_kokkos(LAMMPS *lmp, int narg, char **arg)
{
  return new FixDeqformerStateKokkos<LMPDeviceType>(lmp, narg, arg);
}
#endif

}    // namespace

// the one symbol the plugin exports (everything else is built with hidden visibility, so a LAMMPS
// that already contains the deqformer styles keeps its own copies apart from the plugin's)
extern "C" __attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto reg = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  lammpsplugin_t plugin;
  plugin.version = LAMMPS_VERSION;
  plugin.author = "the deqformer project";
  plugin.handle = handle;

  // the per-atom state fix first: the pair style creates it at its first init
  plugin.style = "fix";
  plugin.name = "DEQFORMER/STATE";
  plugin.info = "fix DEQFORMER/STATE (per-atom fixed-point state of pair_style deqformer)";
  plugin.creator.v2 = reinterpret_cast<lammpsplugin_factory2 *>(&make_fix);
  (*reg)(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "deqformer/solver";
  plugin.info = "compute deqformer/solver (solver statistics of pair_style deqformer)";
  plugin.creator.v2 = reinterpret_cast<lammpsplugin_factory2 *>(&make_compute);
  (*reg)(&plugin, lmp);

  plugin.style = "pair";
  plugin.name = "deqformer";
  plugin.info = "pair_style deqformer (deep-equilibrium equivariant transformer)";
  plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&make_pair);
  (*reg)(&plugin, lmp);

#ifdef DEQFORMER_PLUGIN_KOKKOS
  // LAMMPS keeps the name pointers: string literals
  static const char *const fix_names[] = {"DEQFORMER/STATE/kk", "DEQFORMER/STATE/kk/device",
                                          "DEQFORMER/STATE/kk/host"};
  static const char *const pair_names[] = {"deqformer/kk", "deqformer/kk/device", "deqformer/kk/host"};
  for (int k = 0; k < 3; ++k) {
    plugin.style = "fix";
    plugin.name = fix_names[k];
    plugin.info = "fix DEQFORMER/STATE/kk (per-atom fixed-point state of pair_style deqformer/kk)";
    plugin.creator.v2 = reinterpret_cast<lammpsplugin_factory2 *>(&make_fix_kokkos);
    (*reg)(&plugin, lmp);
    plugin.style = "pair";
    plugin.name = pair_names[k];
    plugin.info = "pair_style deqformer/kk (KOKKOS variant of pair_style deqformer)";
    plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&make_pair_kokkos);
    (*reg)(&plugin, lmp);
  }
#endif
}
