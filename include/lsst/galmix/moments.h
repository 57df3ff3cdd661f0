// Adaptive (elliptical-Gaussian-weighted) second moments: the fitter's starting sizes and stamp sizes.
#ifndef LSST_GALMIX_MOMENTS_H
#define LSST_GALMIX_MOMENTS_H

namespace lsst {
namespace galmix {

/// Centroid (absolute pixels), weight covariance (xx, xy, yy), flux of the matched elliptical Gaussian,
/// and whether the iteration converged to a positive-definite covariance.
struct AdaptiveMomentsResult {
    double x, y, xx, xy, yy, flux;
    bool ok;
};

/// Adaptive second moments of an ny x nx row-major image whose pixel [0, 0] is at absolute (x0, y0), over
/// its finite pixels of positive weight (weight may be null: every finite pixel). The weight ellipse is
/// iterated from a round Gaussian of sigma0 at the guess (absolute; without one, the brightest pixel)
/// until it matches the object: for a Gaussian object of covariance C the fixed point of M <- 2 Q(M)
/// (Q the weighted second moments) is M = C, reached in one step by M <- (Q^-1 - M^-1)^-1 where that is
/// positive and within a factor 4 in trace. The covariance is floored at 1/12 pixel^2 (sub-pixel
/// objects), and the iteration stops when the covariance changes by at most rtol of its scale and the
/// centroid by less than rtol pixels. fixCentroid holds the centroid at the guess. Not converged (ok
/// false): the values of the last iteration, and as flux twice the sum of the positive pixels. This is
/// lsst.galmix.fitting.moments.adaptive_moments, whose numpy form it replaced (the same operations in the
/// same order; sums and exponentials may differ in their last bits).
AdaptiveMomentsResult adaptiveMoments(double const* image, double const* weight, int nx, int ny, double x0,
                                      double y0, bool hasGuess, double guessX, double guessY, double sigma0,
                                      int maxIter, bool fixCentroid, double rtol);

}  // namespace galmix
}  // namespace lsst

#endif
