#include "lsst/galmix/moments.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lsst {
namespace galmix {

namespace {

struct Terms {
    double xx, xy, yy;
};

// The next weight covariance from the weighted moments q measured with weight covariance m: the one-step
// Gaussian solution (q^-1 - m^-1)^-1 where it is positive and its trace within a factor 4 of m's, else 2 q.
Terms updateTerms(Terms const& m, Terms const& q) {
    double detQ = q.xx * q.yy - q.xy * q.xy;
    double detM = m.xx * m.yy - m.xy * m.xy;
    if (detQ > 0.0 && detM > 0.0) {
        double a = q.yy / detQ - m.yy / detM;
        double b = -q.xy / detQ + m.xy / detM;
        double d = q.xx / detQ - m.xx / detM;
        double det = a * d - b * b;
        if (a > 0.0 && det > 0.0) {
            Terms c{d / det, -b / det, a / det};
            double ratio = (c.xx + c.yy) / (m.xx + m.yy);
            if (0.25 < ratio && ratio < 4.0) return c;
        }
    }
    return {2.0 * q.xx, 2.0 * q.xy, 2.0 * q.yy};
}

}  // namespace

AdaptiveMomentsResult adaptiveMoments(double const* image, double const* weight, int nx, int ny, double x0,
                                      double y0, bool hasGuess, double guessX, double guessY, double sigma0,
                                      int maxIter, bool fixCentroid, double rtol) {
    // The used pixels in row-major order.
    std::vector<double> xs, ys, val;
    for (int j = 0; j < ny; ++j) {
        for (int i = 0; i < nx; ++i) {
            std::ptrdiff_t k = static_cast<std::ptrdiff_t>(j) * nx + i;
            if (std::isfinite(image[k]) && (weight == nullptr || weight[k] > 0.0)) {
                xs.push_back(i);
                ys.push_back(j);
                val.push_back(image[k]);
            }
        }
    }
    double s0 = sigma0 * sigma0;
    if (val.empty()) {
        return {hasGuess ? guessX : x0, hasGuess ? guessY : y0, s0, 0.0, s0, 0.0, false};
    }
    double cx, cy;
    if (hasGuess) {
        cx = guessX - x0;
        cy = guessY - y0;
    } else {
        std::size_t k = std::max_element(val.begin(), val.end()) - val.begin();  // the first maximum
        cx = xs[k];
        cy = ys[k];
    }
    std::size_t n = val.size();
    std::vector<double> dx(n), dy(n), w(n);
    Terms m{s0, 0.0, s0};
    bool ok = false, fresh = true;
    double flux = 0.0;
    for (int iter = 0; iter < maxIter; ++iter) {
        double det = m.xx * m.yy - m.xy * m.xy;
        if (!(det > 0.0)) break;
        if (fresh) {  // offsets from a moved centroid (never again with a fixed one)
            for (std::size_t k = 0; k < n; ++k) {
                dx[k] = xs[k] - cx;
                dy[k] = ys[k] - cy;
            }
            fresh = false;
        }
        double c = -0.5 / det, mxy2 = 2.0 * m.xy;
        double s = 0.0;
        for (std::size_t k = 0; k < n; ++k) {
            double q = m.yy * (dx[k] * dx[k]) - mxy2 * (dx[k] * dy[k]) + m.xx * (dy[k] * dy[k]);
            w[k] = std::exp(c * q) * val[k];
            s += w[k];
        }
        if (!(s > 0.0)) break;
        double ncx = cx, ncy = cy;
        double sxx = 0.0, sxy = 0.0, syy = 0.0;
        if (fixCentroid) {
            for (std::size_t k = 0; k < n; ++k) {
                sxx += w[k] * (dx[k] * dx[k]);
                sxy += w[k] * (dx[k] * dy[k]);
                syy += w[k] * (dy[k] * dy[k]);
            }
        } else {
            double sx = 0.0, sy = 0.0;
            for (std::size_t k = 0; k < n; ++k) {
                sx += w[k] * dx[k];
                sy += w[k] * dy[k];
            }
            ncx = cx + sx / s;
            ncy = cy + sy / s;
            double shiftX = ncx - cx, shiftY = ncy - cy;
            for (std::size_t k = 0; k < n; ++k) {
                double ex = dx[k] - shiftX, ey = dy[k] - shiftY;
                sxx += w[k] * (ex * ex);
                sxy += w[k] * (ex * ey);
                syy += w[k] * (ey * ey);
            }
            fresh = true;
        }
        Terms next = updateTerms(m, {sxx / s, sxy / s, syy / s});
        // Sub-pixel objects: keep the weight from collapsing below the pixel scale.
        double tr = next.xx + next.yy, detNew = next.xx * next.yy - next.xy * next.xy;
        double lamMin = 0.5 * tr - std::sqrt(std::max(0.25 * tr * tr - detNew, 0.0));
        double add = std::max(0.0, 1.0 / 12 - lamMin);
        next = {next.xx + add, next.xy + 0.0 * add, next.yy + add};
        if (!(std::isfinite(next.xx) && std::isfinite(next.xy) && std::isfinite(next.yy) &&
              next.xx * next.yy - next.xy * next.xy > 0.0)) {
            break;
        }
        double scale = std::max(std::abs(next.xx), std::abs(next.yy));
        double change =
                std::max({std::abs(next.xx - m.xx), std::abs(next.xy - m.xy), std::abs(next.yy - m.yy)});
        bool done = change <= rtol * scale && std::abs(ncx - cx) < rtol && std::abs(ncy - cy) < rtol;
        m = next;
        cx = ncx;
        cy = ncy;
        // At the fixed point the weighted sum is half the flux of a Gaussian object.
        flux = 2.0 * s;
        if (done) {
            ok = true;
            break;
        }
        if (!(0.0 <= cx && cx < nx && 0.0 <= cy && cy < ny) ||
            m.xx > 4.0 * (static_cast<double>(nx) * nx + static_cast<double>(ny) * ny)) {
            break;
        }
    }
    if (!ok) {
        flux = 0.0;
        for (double v : val) flux += std::max(v, 0.0);
        flux *= 2.0;
    }
    return {cx + x0, cy + y0, m.xx, m.xy, m.yy, flux, ok};
}

}  // namespace galmix
}  // namespace lsst
