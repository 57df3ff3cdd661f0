// Runtime choice of the instruction set the hot kernels run with, and helpers for vectorised loops.
//
// One build carries the kernels compiled for the x86-64 baseline (SSE2), AVX2+FMA (x86-64-v3) and
// AVX-512 (x86-64-v4). The best set the CPU runs is used unless the environment variable GALMIX_ISA
// (avx512, avx2, baseline or auto; read at the first evaluation) or setIsa() names another.
#ifndef LSST_GALMIX_SIMD_H
#define LSST_GALMIX_SIMD_H

#include <string>
#include <vector>

#if defined(__GNUC__)
#define GALMIX_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GALMIX_ALWAYS_INLINE inline
#endif

namespace lsst {
namespace galmix {

/// Which kernels are in use, why, and which instruction sets this CPU runs.
std::string dispatchInfo();

/// Names of the kernel sets this CPU can run, fastest first ("avx512", "avx2", "baseline").
std::vector<std::string> supportedIsas();

/// Name of the kernel set in use; selects it from GALMIX_ISA or the CPU on first use.
/// Throws std::invalid_argument if GALMIX_ISA names an unknown set or one this CPU cannot run.
std::string activeIsa();

/// Use the named kernel set ("avx512", "avx2", "baseline"; "auto" or "" for the best this CPU runs)
/// from now on. Throws std::invalid_argument for an unknown set or one this CPU cannot run. Not meant
/// to be called while another thread evaluates.
void setIsa(std::string const& name);

}  // namespace galmix
}  // namespace lsst

#endif
