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
int halfSizeAlong(std::vector<double> const& var, std::vector<double> const& w,
                  std::vector<double> const& peak, double half, double logRatio, double level, int limit) {
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
    if (limit > kMaxHalfSize) {
        throw InputError("stamp half sizes: limit " + std::to_string(limit) + " beyond " +
                         std::to_string(kMaxHalfSize) + " pixels");
    }
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
    if (!(sigmas >= 0.0)) throw InputError("background_mask: sigmas must be >= 0");
    std::size_t n = static_cast<std::size_t>(nx) * ny;
    for (std::size_t i = 0; i < n; ++i) background[i] = weight[i] > 0.0;
    double const s2 = sigmas * sigmas;
    // Pixel index range [0, size) of the absolute coordinates [lo, hi] plus a pixel of margin.
    auto clampRange = [](double lo, double hi, int origin, int size, int& first, int& last) {
        double f = std::floor(lo) - 1.0 - origin, l = std::ceil(hi) + 1.0 - origin;
        first = f > 0.0 ? static_cast<int>(std::min(f, static_cast<double>(size))) : 0;
        last = l < size - 1.0 ? static_cast<int>(std::max(l, -1.0)) : size - 1;
    };
    for (int k = 0; k < nSources; ++k) {
        double cx = centres[2 * k], cy = centres[2 * k + 1];
        double a = covs[3 * k], b = covs[3 * k + 1], d = covs[3 * k + 2];
        // The region d2 <= s2 of a positive-definite covariance lies within `reach` of the centre (sigmas
        // times the major-axis sigma): a source beyond it is skipped, and only the pixels within it are
        // tested. (The numpy form this replaced skipped by the same test for every covariance.)
        double halfTrace = 0.5 * (a + d);
        double major = std::sqrt(std::max(halfTrace + std::sqrt(0.25 * (a - d) * (a - d) + b * b), 0.0));
        double reach = sigmas * major;
        bool located = std::isfinite(reach) && std::isfinite(cx) && std::isfinite(cy);
        if (located && (cx + reach < x0 || cx - reach > x0 + nx - 1.0 || cy + reach < y0 ||
                        cy - reach > y0 + ny - 1.0)) {
            continue;
        }
        double det = a * d - b * b;
        if (det == 0.0) {
            throw InputError("background_mask: singular covariance of source " + std::to_string(k));
        }
        int i0 = 0, i1 = nx - 1, j0 = 0, j1 = ny - 1;  // the pixels to test: all unless bounded
        if (located && a > 0.0 && det > 0.0) {
            clampRange(cx - reach, cx + reach, x0, nx, i0, i1);
            clampRange(cy - reach, cy + reach, y0, ny, j0, j1);
        }
        // The closed-form inverse, in the order of the numpy expression it replaced (the same masks).
        double p = d / det, q = 2.0 * (-b / det), r = a / det;
        for (int j = j0; j <= j1; ++j) {
            double dy = (static_cast<double>(y0) + j) - cy;
            std::uint8_t* row = background + static_cast<std::ptrdiff_t>(j) * nx;
            for (int i = i0; i <= i1; ++i) {
                double dx = (static_cast<double>(x0) + i) - cx;
                double d2 = p * dx * dx + q * dx * dy + r * dy * dy;
                if (!(d2 > s2)) row[i] = 0;
            }
        }
    }
}

}  // namespace galmix
}  // namespace lsst
