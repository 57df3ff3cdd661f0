// Internal interface between evaluate.cc and the per-instruction-set kernels (kernels.cc).
#ifndef LSST_GALMIX_SRC_KERNELS_H
#define LSST_GALMIX_SRC_KERNELS_H

#include <cstddef>

namespace lsst {
namespace galmix {
namespace detail {

// A Gaussian ready for evaluation: inverse covariance, normalisation, its flux parts ds[dBegin, dEnd), the
// first Gaussian of its flux group (-1: no flux parts) and the terms of its centre and covariance groups,
// terms[cenBegin, cenEnd) and terms[covBegin, covEnd) (begin = end = -1: none).
struct GPre {
    double cx, cy, ixx, ixy, iyy, unit, flux;
    double rixx;  // 1 / ixx: row ranges multiply by it (a division per Gaussian-row costs ~5% of small fits)
    int dBegin, dEnd, fluxGroup, cenBegin, cenEnd, covBegin, covEnd;
    // No other Gaussian shares its flux or covariance group: its parts go to their columns directly (the
    // PSF Gaussians of a PSF fit), without the group sums' stores and zeroing.
    bool alone;
    // Bit t set: a derivative of this Gaussian lies in column tile t (columns [t tile, (t + 1) tile) of
    // the active table's tile width). Set by the caller when the sparse normal-equation path is on.
    unsigned long long tiles;
};

// d(model)/d(param) of one Gaussian of flux f, with e = exp(-Q/2) / (2 pi sqrt(det)), v = f e and
// u = C^{-1} (p - centre), split by what the parameter moves:
//   flux part        k e                                                        (DPre, per Gaussian)
//   centre part      a v ux + b v uy                                            (GroupTerm, centre group)
//   covariance part  a v (ux^2 - ixx) + b v (ux uy - ixy) + c v (uy^2 - iyy)    (GroupTerm, covariance group)
// A centre or covariance group is a run of consecutive Gaussians whose parts are the same for every
// parameter: the PSF Gaussians of one profile component share d(covariance)/d(param), all Gaussians of a
// source its centre's. The kernel sums v ux, v uy and the three covariance terms over a group's Gaussians
// and adds them to the group's columns once, instead of adding every Gaussian to every column. A flux group
// is a run of Gaussians with flux parts in the same columns: the kernel sums the first kFluxRegs of them
// over the group in registers (further flux parts go to the Jacobian row directly). Why: a column that
// every Gaussian adds to in the Jacobian row in memory is a chain of dependent loads and stores from
// Gaussian to Gaussian; sums in registers leave one load and store per group.
struct DPre {
    int col;
    double k;
};
constexpr int kFluxRegs = 2;
struct GroupTerm {
    int col;
    double a, b, c;
};

// Pixels whose vectors every kernel pads its runs to (the widest block of any instruction set).
constexpr int kMaxBlock = 16;

// Pixels whose Jacobian rows the normal-equation kernel buffers before its rank-k update, and the
// widest tile of that update.
constexpr int kDepthPixels = 32;
constexpr int kMaxTile = 4;
// Column tiles the sparse normal-equation path can track (one bit each of GPre::tiles); problems with
// more tiles take the dense path.
constexpr int kMaxSparseTiles = 64;

// Scratch of the normal-equation kernel, 64-byte aligned and zeroed, sized by the caller for P
// parameters and nG Gaussians (Pt = P + kMaxTile, at least P rounded up to any table's tile):
// rows nG * kRowDoubles; jac and wjac (J and w J of the buffered rows) Pt * kDepthPixels each; acc Pt * Pt * kMaxBlock;
// bacc P * kMaxBlock; cacc kMaxBlock. acc (row stride = P rounded up to the table's tile), bacc and
// cacc hold per-lane partial sums (`lanes` of them per entry) that the caller reduces once per image.
// sparse: zero, accumulate and rank-update only the column tiles the evaluated Gaussians touch (their
// GPre::tiles must be set); bit-identical to the dense path, which visits every column.
constexpr int kRowDoubles = 24 + 2 * kMaxBlock;
// Per Gaussian, the constants of the row recurrences that depend on its shape only (kernels_impl.inc: one
// for steps of one block, one for steps of two),
// filled by the first run of an image: the caller sizes gconst nG * kGaussConstDoubles and sets *ready = 0.
constexpr int kGaussConstDoubles = 2;
// cols (optional): the kernel also writes the Jacobian columns colIdx[0, nCols) of the run's pixels to
// cols + j colStride + i, i < n rounded up to kMaxBlock (flux columns: the unit-flux models, which spares
// the caller a second pass to draw the fitted model).
struct NormalScratch {
    double* gconst;
    int* ready;
    double* rows;
    double* jac;
    double* wjac;
    double* acc;
    double* bacc;
    double* cacc;
    bool sparse;
    double* cols = nullptr;
    int const* colIdx = nullptr;
    int nCols = 0;
    std::ptrdiff_t colStride = 0;
};

// The hot loops compiled for one instruction set.
struct KernelTable {
    char const* name;         // "avx512", "avx2" or "baseline"
    char const* description;  // instruction sets the code was compiled for
    int lanes;                // doubles per block of the normal-equation kernel
    int tile;                 // acc's row stride is P rounded up to a multiple of this
    // out[0, n) = the mixture on pixel row ypix, columns x0 + i.
    void (*imageRow)(GPre const* gs, int nG, double ypix, double x0, int n, double* out);
    // chi2 of one run of n pixels starting at column x0; m is scratch of n doubles.
    double (*chi2Run)(GPre const* gs, int nG, double ypix, double x0, int n, double const* data,
                      double const* w, double* m);
    // Adds one run's chi2, J^T W J (lower triangle) and J^T W r to the scratch accumulators. data and w
    // are padded with zeros to a multiple of kMaxBlock.
    void (*normalRun)(GPre const* gs, int nG, DPre const* ds, GroupTerm const* terms, double ypix, double x0,
                      int n, double const* data, double const* w, int P, NormalScratch const& s);
};

// The kernels in use (selected once from GALMIX_ISA or the CPU, changed by setIsa).
KernelTable const& activeKernels();

}  // namespace detail
}  // namespace galmix
}  // namespace lsst

#endif
