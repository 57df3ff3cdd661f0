// A 2-D Gaussian (flux, centre, covariance) and its conversions.
#ifndef LSST_GALMIX_GAUSSIAN_H
#define LSST_GALMIX_GAUSSIAN_H

#include <array>
#include <cstddef>
#include <string>

namespace lsst {
namespace galmix {

/// Integrated flux, centre (pixels) and covariance (pixel^2) of a 2-D Gaussian.
struct Gaussian {
    double flux = 0.0;
    double x = 0.0;
    double y = 0.0;
    double xx = 0.0;
    double xy = 0.0;
    double yy = 0.0;

    std::array<double, 6> toArray() const { return {flux, x, y, xx, xy, yy}; }
    static Gaussian fromArray(const double* v) { return {v[0], v[1], v[2], v[3], v[4], v[5]}; }
};

/// (sigma_x, sigma_y, rho): marginal widths and correlation coefficient.
struct SigmaForm {
    double sigmaX, sigmaY, rho;
};

/// (a, q, theta): major-axis sigma, axis ratio b/a and position angle (radians CCW from +x).
struct EllipseForm {
    double a, q, theta;
};

Gaussian fromSigma(double flux, double x, double y, SigmaForm const& s);
SigmaForm toSigma(Gaussian const& g);
Gaussian fromEllipse(double flux, double x, double y, EllipseForm const& e);
EllipseForm toEllipse(Gaussian const& g);

/// Empty if `g` can be evaluated safely, else why not: every value finite, a positive-definite
/// covariance whose determinant is a finite, normal number and resolved to better than ~1e-14 of
/// xx * yy (below that it is dominated by rounding and may come out zero or negative elsewhere), and a
/// finite inverse. Without these the evaluation's row ranges (derived from the inverse covariance) are
/// NaN or infinite.
std::string gaussianProblem(Gaussian const& g);

/// Throws InputError ("<what> <index>: <problem>") unless gaussianProblem(g) is empty.
void checkGaussian(Gaussian const& g, const char* what, std::size_t index);

/// Convolution of two Gaussians: centres and covariances add, fluxes multiply.
inline Gaussian convolve(Gaussian const& a, Gaussian const& b) {
    return {a.flux * b.flux, a.x + b.x, a.y + b.y, a.xx + b.xx, a.xy + b.xy, a.yy + b.yy};
}

}  // namespace galmix
}  // namespace lsst

#endif
