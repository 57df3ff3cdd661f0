#include "lsst/galmix/stamp.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "lsst/galmix/evaluate.h"

namespace lsst {
namespace galmix {

namespace {

// requiredHalfSize along one axis (var: each Gaussian's variance along it, floored at 1e-6; w: positive
// fluxes over the total; half: half the flux fraction; level < 0: no surface-brightness bound).
int halfSizeAlong(std::vector<double> const& var, std::vector<double> const& w, std::vector<double> const& peak,
                  double half, double logRatio, double level, int limit) {
    int top = limit;
    if (half > 0.0) {
        double vmax = 0.0;
        for (double v : var) vmax = std::max(vmax, v);
        top = static_cast<int>(std::min<double>(top, std::ceil(std::sqrt(2.0 * vmax * logRatio))));
    }
    // Both bounds fall with the radius: the first radius that passes is the answer.
    for (int r = 0; r <= top; ++r) {
        double q = -0.5 * (static_cast<double>(r) * r);
        double light = 0.0, edge = 0.0;
        for (std::size_t k = 0; k < var.size(); ++k) {
            double e = std::exp(q / var[k]);
            light += w[k] * e;
            edge += peak[k] * e;
        }
        if (light <= half || (level >= 0.0 && edge <= level)) return r;
    }
    return top;
}

}  // namespace

std::pair<int, int> requiredHalfSize(Mixture const& m, double noise, double fluxFraction, double edgeNoise,
                                     int limit) {
    double total = 0.0;
    for (auto const& g : m) {
        if (!(std::isfinite(g.flux) && std::isfinite(g.x) && std::isfinite(g.y) && std::isfinite(g.xx) &&
              std::isfinite(g.xy) && std::isfinite(g.yy))) {
            return {0, 0};
        }
        total += g.flux;
    }
    if (!(total > 0.0)) return {0, 0};
    std::size_t n = m.size();
    std::vector<double> w(n), peak(n), varX(n), varY(n);
    double wSum = 0.0;
    for (std::size_t k = 0; k < n; ++k) {
        Gaussian const& g = m[k];
        double positive = std::max(g.flux, 0.0);
        double det = g.xx * g.yy - g.xy * g.xy;
        peak[k] = positive / (2.0 * M_PI * std::sqrt(std::max(det, 1e-12)));
        w[k] = positive / total;
        wSum += w[k];
        varX[k] = std::max(g.xx, 1e-6);
        varY[k] = std::max(g.yy, 1e-6);
    }
    double half = 0.5 * fluxFraction;
    // What both axes share (the light bound's log, the surface-brightness level) is computed once.
    double logRatio = half > 0.0 ? std::max(std::log(wSum / half), 0.0) : 0.0;
    double level = noise > 0.0 ? edgeNoise * noise : -1.0;
    return {halfSizeAlong(varX, w, peak, half, logRatio, level, limit),
            halfSizeAlong(varY, w, peak, half, logRatio, level, limit)};
}

void backgroundPixels(double const* weight, int nx, int ny, int x0, int y0, double const* centres,
                      double const* covs, int nSources, double sigmas, std::uint8_t* background) {
    std::size_t n = static_cast<std::size_t>(nx) * ny;
    for (std::size_t i = 0; i < n; ++i) background[i] = weight[i] > 0.0;
    double const s2 = sigmas * sigmas;
    for (int k = 0; k < nSources; ++k) {
        double cx = centres[2 * k], cy = centres[2 * k + 1];
        double a = covs[3 * k], b = covs[3 * k + 1], d = covs[3 * k + 2];
        // The region d2 <= s2 lies within `reach` of the centre (sigmas times the major-axis sigma).
        double halfTrace = 0.5 * (a + d);
        double major = std::sqrt(std::max(halfTrace + std::sqrt(0.25 * (a - d) * (a - d) + b * b), 0.0));
        double reach = sigmas * major;
        int i0 = 0, i1 = nx - 1, j0 = 0, j1 = ny - 1;  // the pixels to test (all unless known)
        if (std::isfinite(reach) && std::isfinite(cx) && std::isfinite(cy)) {
            if (cx + reach < x0 || cx - reach > x0 + nx - 1 || cy + reach < y0 || cy - reach > y0 + ny - 1) {
                continue;  // its region does not touch the stamp
            }
            // One pixel of margin: the box is exact but for rounding.
            i0 = std::max(i0, static_cast<int>(std::floor(cx - reach)) - 1 - x0);
            i1 = std::min(i1, static_cast<int>(std::ceil(cx + reach)) + 1 - x0);
            j0 = std::max(j0, static_cast<int>(std::floor(cy - reach)) - 1 - y0);
            j1 = std::min(j1, static_cast<int>(std::ceil(cy + reach)) + 1 - y0);
        }
        double det = a * d - b * b;
        if (det == 0.0) throw InputError("background pixels: singular covariance of source " + std::to_string(k));
        // The closed-form inverse, in the order of the numpy expression it replaced (the same masks).
        double p = d / det, q = 2.0 * (-b / det), r = a / det;
        for (int j = j0; j <= j1; ++j) {
            double dy = static_cast<double>(y0 + j) - cy;
            std::uint8_t* row = background + static_cast<std::ptrdiff_t>(j) * nx;
            for (int i = i0; i <= i1; ++i) {
                double dx = static_cast<double>(x0 + i) - cx;
                double d2 = p * dx * dx + q * dx * dy + r * dy * dy;
                if (!(d2 > s2)) row[i] = 0;
            }
        }
    }
}

}  // namespace galmix
}  // namespace lsst
