// Gaussian mixtures and their convolution.
#ifndef LSST_GALMIX_MIXTURE_H
#define LSST_GALMIX_MIXTURE_H

#include <utility>
#include <vector>

#include "lsst/galmix/gaussian.h"

namespace lsst {
namespace galmix {

using Mixture = std::vector<Gaussian>;

/// Every source Gaussian convolved with every PSF Gaussian, source-major order (i * nPsf + j).
Mixture convolve(Mixture const& source, Mixture const& psf);

/// Sum of the fluxes.
double totalFlux(Mixture const& m);

/// Half-sizes along x and y, in whole pixels from the centre, of the stamp that holds a mixture's model
/// (one source's PSF-convolved Gaussians in one band): per axis the smallest radius R <= limit at which
/// either the light beyond the edges |x| = R (half of it beyond each pair) is at most fluxFraction, or the
/// surface brightness on them is at most edgeNoise * noise (noise: the band's typical pixel sigma; no such
/// bound where noise <= 0). Both are bounded per Gaussian by its variance along the axis v (xx for the x
/// edges): beyond |x| > R lies at most exp(-R^2 / (2 v)) of its light, and on the line x = R its surface
/// brightness is at most peak exp(-R^2 / (2 v)), so an elongated galaxy gets the box of its ellipse. Only
/// positive fluxes count (as fractions of the total flux); a mixture with a non-finite value or without
/// positive total flux gives (0, 0). Without any radius passing, limit, or where the light bound holds
/// but for rounding, sqrt(2 max(v) ln(sum of fractions / (fluxFraction / 2))).
std::pair<int, int> requiredHalfSize(Mixture const& m, double noise, double fluxFraction, double edgeNoise,
                                     int limit);

}  // namespace galmix
}  // namespace lsst

#endif
