#include "lsst/galmix/gaussian.h"
#include "lsst/galmix/mixture.h"

#include <cfloat>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "lsst/galmix/evaluate.h"

namespace lsst {
namespace galmix {

namespace {

Gaussian finiteOrThrow(Gaussian const& g, const char* what) {
    if (!(std::isfinite(g.flux) && std::isfinite(g.x) && std::isfinite(g.y) && std::isfinite(g.xx) &&
          std::isfinite(g.xy) && std::isfinite(g.yy))) {
        throw std::invalid_argument(std::string(what) + ": inputs must be finite and the covariance must not "
                                    "overflow double precision");
    }
    return g;
}

}  // namespace

Gaussian fromSigma(double flux, double x, double y, SigmaForm const& s) {
    if (!(s.sigmaX >= 0.0 && s.sigmaY >= 0.0 && std::abs(s.rho) <= 1.0)) {
        throw std::invalid_argument("fromSigma: need sigma_x, sigma_y >= 0 and |rho| <= 1");
    }
    return finiteOrThrow({flux, x, y, s.sigmaX * s.sigmaX, s.rho * s.sigmaX * s.sigmaY, s.sigmaY * s.sigmaY},
                         "fromSigma");
}

SigmaForm toSigma(Gaussian const& g) {
    if (!(std::isfinite(g.xx) && std::isfinite(g.xy) && std::isfinite(g.yy) && g.xx >= 0.0 && g.yy >= 0.0)) {
        throw std::invalid_argument("toSigma: need finite xx, xy, yy with xx, yy >= 0");
    }
    double sx = std::sqrt(g.xx), sy = std::sqrt(g.yy);
    double rho = (sx > 0.0 && sy > 0.0) ? g.xy / (sx * sy) : 0.0;
    if (!std::isfinite(rho)) throw std::invalid_argument("toSigma: xy / sqrt(xx yy) overflows (not a covariance)");
    return {sx, sy, rho};
}

Gaussian fromEllipse(double flux, double x, double y, EllipseForm const& e) {
    if (!(e.a >= 0.0 && e.q >= 0.0 && e.q <= 1.0)) {
        throw std::invalid_argument("fromEllipse: need a >= 0 and 0 <= q <= 1");
    }
    double c = std::cos(e.theta), s = std::sin(e.theta);
    double a2 = e.a * e.a, b2 = a2 * e.q * e.q;
    return finiteOrThrow({flux, x, y, a2 * c * c + b2 * s * s, (a2 - b2) * c * s, a2 * s * s + b2 * c * c},
                         "fromEllipse");
}

EllipseForm toEllipse(Gaussian const& g) {
    if (!(std::isfinite(g.xx) && std::isfinite(g.xy) && std::isfinite(g.yy))) {
        throw std::invalid_argument("toEllipse: need finite xx, xy, yy");
    }
    // Eigen-decomposition of the 2x2 covariance.
    double half_tr = 0.5 * (g.xx + g.yy);
    double d = std::hypot(0.5 * (g.xx - g.yy), g.xy);
    double l1 = half_tr + d, l2 = std::max(half_tr - d, 0.0);
    double a = std::sqrt(l1);
    double q = l1 > 0.0 ? std::sqrt(l2 / l1) : 1.0;
    double theta = 0.5 * std::atan2(2.0 * g.xy, g.xx - g.yy);
    if (!(std::isfinite(a) && std::isfinite(q) && std::isfinite(theta))) {
        throw std::invalid_argument("toEllipse: the covariance's eigenvalues overflow double precision");
    }
    return {a, q, theta};
}

std::string gaussianProblem(Gaussian const& g) {
    bool finite = std::isfinite(g.flux) && std::isfinite(g.x) && std::isfinite(g.y) && std::isfinite(g.xx) &&
                  std::isfinite(g.xy) && std::isfinite(g.yy);
    if (!finite) return "has non-finite values";
    // Called for every model Gaussian of every evaluation: the message is formatted only on failure.
    auto cov = [&g]() {
        std::ostringstream os;
        os << "(xx=" << g.xx << ", xy=" << g.xy << ", yy=" << g.yy << ")";
        return os.str();
    };
    double det = g.xx * g.yy - g.xy * g.xy;
    if (!(g.xx > 0.0 && g.yy > 0.0 && det > 0.0)) {
        if (std::isinf(det) || std::isnan(det)) {
            return "has a covariance whose determinant xx*yy - xy^2 overflows double precision " + cov();
        }
        return "has a covariance that is not positive definite " + cov();
    }
    if (!std::isfinite(det)) {
        return "has a covariance whose determinant xx*yy - xy^2 overflows double precision " + cov();
    }
    // Relative resolution of det: below ~64 ulp of xx*yy the subtraction has lost all its digits.
    if (det < DBL_MIN || det < 64.0 * DBL_EPSILON * (g.xx * g.yy)) {
        std::ostringstream d;
        d << "has a covariance too close to singular to evaluate (determinant " << det
          << " is lost to rounding) " << cov();
        return d.str();
    }
    if (!(std::isfinite(g.xx / det) && std::isfinite(g.yy / det) && std::isfinite(g.xy / det))) {
        return "has a covariance whose inverse overflows double precision " + cov();
    }
    return {};
}

void checkGaussian(Gaussian const& g, const char* what, std::size_t index) {
    std::string problem = gaussianProblem(g);
    if (!problem.empty()) {
        std::ostringstream os;
        os << what << " " << index << " " << problem;
        throw InputError(os.str());
    }
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
