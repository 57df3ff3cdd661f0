// What the fitting library's stamp decisions need from the engine: how far a fitted model reaches, and
// which pixels of a stamp lie beyond every source (the background the sky test reads).
#ifndef LSST_GALMIX_STAMP_H
#define LSST_GALMIX_STAMP_H

#include <cstdint>
#include <utility>

#include "lsst/galmix/mixture.h"

namespace lsst {
namespace galmix {

/// Half-sizes along x and y, in whole pixels from the centre, of the stamp that holds a mixture's model
/// (one source's PSF-convolved Gaussians in one band): per axis the smallest radius R <= limit at which
/// either the light beyond the edges |x| = R (half of it beyond each pair) is at most fluxFraction, or the
/// surface brightness on them is at most edgeNoise * noise (noise: the band's typical pixel sigma; no such
/// bound where noise <= 0). Both are bounded per Gaussian by its variance along the axis v (xx for the x
/// edges): beyond |x| > R lies at most exp(-R^2 / (2 v)) of its light, and on the line x = R its surface
/// brightness is at most peak exp(-R^2 / (2 v)), so an elongated galaxy gets the box of its ellipse. Only
/// positive fluxes count (as fractions of the total flux); a mixture with a non-finite value or without
/// positive total flux gives (0, 0). Without any radius passing, limit, or where the light bound holds
/// but for rounding, sqrt(2 max(v) ln(sum of fractions / (fluxFraction / 2))). A limit beyond
/// kMaxHalfSize throws InputError.
constexpr int kMaxHalfSize = 1 << 16;
std::pair<int, int> requiredHalfSize(Mixture const& m, double noise, double fluxFraction, double edgeNoise,
                                     int limit);

/// Background pixels of a stamp: background[i] = 1 where weight[i] > 0 and the pixel lies farther than
/// `sigmas` observed sigma (the Mahalanobis distance of its centre) from every source, else 0. The stamp
/// is ny x nx, row-major, its pixel [0, 0] at absolute (x0, y0); source k is centred at centres[2k, 2k+1]
/// with observed covariance terms covs[3k, 3k+1, 3k+2] = (xx, xy, yy). A source whose covariance or centre
/// is not finite, or whose covariance is not positive definite, is tested on every pixel; a singular
/// covariance, or sigmas not >= 0, throws InputError.
void backgroundPixels(double const* weight, int nx, int ny, int x0, int y0, double const* centres,
                      double const* covs, int nSources, double sigmas, std::uint8_t* background);

}  // namespace galmix
}  // namespace lsst

#endif
