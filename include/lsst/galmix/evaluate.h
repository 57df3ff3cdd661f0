// Evaluation of Gaussian mixtures on pixel grids: image, chi-square and one-pass normal equations.
#ifndef LSST_GALMIX_EVALUATE_H
#define LSST_GALMIX_EVALUATE_H

#include <array>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "lsst/galmix/mixture.h"

namespace lsst {
namespace galmix {

/// Bad input (shapes, non-finite or negative values); mapped to Python ValueError.
class InputError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

enum class DType { F32, F64 };

/// A read-only row-major [y, x] image with optional per-pixel inverse sigma (weight = sigmaInv^2).
/// Pixel centres are at integer coordinates; element [0, 0] is at pixel coordinate (x0, y0).
/// Strides are in elements; the x stride must be 1.
struct ImageRef {
    const void* data = nullptr;
    DType dtype = DType::F64;
    std::ptrdiff_t ny = 0, nx = 0, rowStride = 0;
    const void* sigmaInv = nullptr;  // may be null: unit weights
    DType sigmaDtype = DType::F64;
    std::ptrdiff_t sigmaRowStride = 0;
    double x0 = 0.0, y0 = 0.0;
};

/// A writable row-major image.
struct OutImageRef {
    void* data = nullptr;
    DType dtype = DType::F64;
    std::ptrdiff_t ny = 0, nx = 0, rowStride = 0;
    double x0 = 0.0, y0 = 0.0;
};

/// A contiguous run of pixels with non-zero weight in one row.
struct PixelRun {
    int row, begin, end;
};

/// An image checked once (finite data and weights, weights >= 0) with its runs of weighted pixels.
/// Pixels of zero weight are never read again, so they may hold NaN.
class PreparedImage {
public:
    explicit PreparedImage(ImageRef const& ref);
    ImageRef const& ref() const { return _ref; }
    std::vector<PixelRun> const& runs() const { return _runs; }
    std::size_t nPixels() const { return _nPix; }
    double x0() const { return _ref.x0; }
    double y0() const { return _ref.y0; }

private:
    ImageRef _ref;
    std::vector<PixelRun> _runs;
    std::size_t _nPix = 0;
};

/// Derivative of Gaussian `gaussian`'s six values (flux, x, y, xx, xy, yy) with respect to the
/// parameter in column `column` of the normal equations.
struct GaussianDeriv {
    int gaussian;
    int column;
    std::array<double, 6> d;
};

/// chi2 = sum w (data - model)^2; H = J^T W J (row-major P x P); b = J^T W (data - model).
/// The gradient of chi2 is -2 b.
struct NormalEquations {
    int nParams = 0;
    double chi2 = 0.0;
    std::vector<double> H;
    std::vector<double> b;
};

/// Overwrite `out` with the mixture evaluated at pixel centres (all pixels, weights not involved).
void renderImage(Mixture const& mixture, OutImageRef const& out);

/// chi-square of the mixture against a prepared image.
double computeChi2(Mixture const& mixture, PreparedImage const& image);

/// chi2 and normal equations in one pass over the weighted pixels, for nParams columns; derivatives
/// with column < 0 or >= nParams are ignored. Accumulates into `out` (which must be sized
/// nParams; call resetNormalEquations first), so several bands can be summed.
///
/// With `columns`, the same pass also writes the Jacobian columns columns[j] (in [0, nParams)) at the
/// weighted pixels into columnImages + j ny nx (row-major over the image; other pixels are not written).
void accumulateNormalEquations(Mixture const& mixture, std::vector<GaussianDeriv> const& derivs,
                               PreparedImage const& image, NormalEquations& out,
                               std::vector<int> const& columns = {}, double* columnImages = nullptr);

NormalEquations makeNormalEquations(int nParams);

/// How accumulateNormalEquations treats the Jacobian columns of a block of pixels. Sparse zeroes,
/// accumulates and rank-updates only the column tiles the Gaussians evaluated there touch (the cheap way
/// for blends, where a block sees the Gaussians of a few sources); dense visits all of them. Auto (the
/// default) takes the sparse path for problems of 5 column tiles or more (P > 12-16) where some Gaussian
/// misses a column tile another one touches (blends, PSF fits of 3-4 Gaussians), and the dense one
/// otherwise (single sources, small P: there the sparse bookkeeping costs more than it skips).
/// All give bit-identical results; the choice exists to test that and to measure.
enum class NormalPath { Auto, Dense, Sparse };

/// Select the normal-equation path for the process (not meant to be changed while another thread
/// evaluates).
void setNormalPath(NormalPath path);

/// The selected normal-equation path.
NormalPath normalPath();

/// Throws InputError unless every Gaussian passes checkGaussian (finite, positive definite, determinant
/// and inverse representable in double precision).
void checkMixture(Mixture const& mixture);

}  // namespace galmix
}  // namespace lsst

#endif
