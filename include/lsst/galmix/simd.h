// Runtime dispatch of the hot kernels and always-inline helpers for vectorised loops.
#ifndef LSST_GALMIX_SIMD_H
#define LSST_GALMIX_SIMD_H

#include <string>

#if defined(__GNUC__)
#define GALMIX_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GALMIX_ALWAYS_INLINE inline
#endif

// The default (portable, SSE2) build gets AVX2+FMA and AVX-512 clones of each kernel, selected at load
// time by an ifunc resolver. A build already targeting AVX2 (GALMIX_MARCH=native) needs no clones.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__) && \
        !defined(GALMIX_NO_CLONES)
#define GALMIX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define GALMIX_HAVE_CLONES 1
#else
#define GALMIX_CLONES
#define GALMIX_HAVE_CLONES 0
#endif

namespace lsst {
namespace galmix {

/// Which code path the kernels use on this machine (build flags and selected clone).
std::string dispatchInfo();

}  // namespace galmix
}  // namespace lsst

#endif
