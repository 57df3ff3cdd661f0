#include "lsst/galmix/gaussian.h"
#include "lsst/galmix/mixture.h"

#include <cmath>
#include <stdexcept>

namespace lsst {
namespace galmix {

Gaussian fromSigma(double flux, double x, double y, SigmaForm const& s) {
    if (!(s.sigmaX >= 0.0 && s.sigmaY >= 0.0 && std::abs(s.rho) <= 1.0)) {
        throw std::invalid_argument("fromSigma: need sigma_x, sigma_y >= 0 and |rho| <= 1");
    }
    return {flux, x, y, s.sigmaX * s.sigmaX, s.rho * s.sigmaX * s.sigmaY, s.sigmaY * s.sigmaY};
}

SigmaForm toSigma(Gaussian const& g) {
    double sx = std::sqrt(g.xx), sy = std::sqrt(g.yy);
    double rho = (sx > 0.0 && sy > 0.0) ? g.xy / (sx * sy) : 0.0;
    return {sx, sy, rho};
}

Gaussian fromEllipse(double flux, double x, double y, EllipseForm const& e) {
    if (!(e.a >= 0.0 && e.q >= 0.0 && e.q <= 1.0)) {
        throw std::invalid_argument("fromEllipse: need a >= 0 and 0 <= q <= 1");
    }
    double c = std::cos(e.theta), s = std::sin(e.theta);
    double a2 = e.a * e.a, b2 = a2 * e.q * e.q;
    return {flux, x, y, a2 * c * c + b2 * s * s, (a2 - b2) * c * s, a2 * s * s + b2 * c * c};
}

EllipseForm toEllipse(Gaussian const& g) {
    // Eigen-decomposition of the 2x2 covariance.
    double half_tr = 0.5 * (g.xx + g.yy);
    double d = std::hypot(0.5 * (g.xx - g.yy), g.xy);
    double l1 = half_tr + d, l2 = std::max(half_tr - d, 0.0);
    double a = std::sqrt(l1);
    double q = l1 > 0.0 ? std::sqrt(l2 / l1) : 1.0;
    double theta = 0.5 * std::atan2(2.0 * g.xy, g.xx - g.yy);
    return {a, q, theta};
}

Mixture convolve(Mixture const& source, Mixture const& psf) {
    Mixture out;
    out.reserve(source.size() * psf.size());
    for (auto const& s : source) {
        for (auto const& p : psf) out.push_back(convolve(s, p));
    }
    return out;
}

double totalFlux(Mixture const& m) {
    double f = 0.0;
    for (auto const& g : m) f += g.flux;
    return f;
}

}  // namespace galmix
}  // namespace lsst
