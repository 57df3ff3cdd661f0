#include "lsst/galmix/profile.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "lsst/galmix/evaluate.h"

namespace lsst {
namespace galmix {

FixedProfile::FixedProfile(std::vector<double> weights, std::vector<double> sizes)
        : _w(std::move(weights)), _s(std::move(sizes)) {
    if (_w.empty() || _w.size() != _s.size()) {
        throw InputError("FixedProfile: weights and sizes must be non-empty and of equal length");
    }
    double top = 0.0;
    for (std::size_t k = 0; k < _w.size(); ++k) {
        if (!(std::isfinite(_w[k]) && _w[k] >= 0.0 && std::isfinite(_s[k]) && _s[k] > 0.0)) {
            throw InputError("FixedProfile: weights must be finite and >= 0, sizes finite and > 0");
        }
        top = std::max(top, _w[k]);
    }
    if (!(top > 0.0)) throw InputError("FixedProfile: weights sum to zero");
    double sum = 0.0;
    for (double w : _w) sum += w;
    if (!std::isfinite(sum)) {
        // Finite weights near the double limit (1e308 + 1e308) overflow their sum, which normalised every
        // weight to 0: scale them by the largest first (only then, so other weights keep their bits).
        sum = 0.0;
        for (auto& w : _w) sum += (w /= top);
    }
    for (auto& w : _w) w /= sum;
}

void FixedProfile::evaluate(double, ProfileValues& out) const {
    out.w = _w;
    out.s = _s;
    out.dw.assign(_w.size(), 0.0);
    out.ds.assign(_w.size(), 0.0);
}

SplineProfile::SplineProfile(std::vector<double> breakpoints, std::vector<double> coeffs, int nValues)
        : _x(std::move(breakpoints)), _c(std::move(coeffs)), _K(nValues / 2) {
    std::size_t M = _x.size();
    if (M < 2) throw InputError("SplineProfile: need at least 2 breakpoints");
    if (nValues <= 0 || nValues % 2 != 0) throw InputError("SplineProfile: need 2K values (weights, ln sizes)");
    if (_c.size() != 4 * (M - 1) * static_cast<std::size_t>(nValues)) {
        throw InputError("SplineProfile: coefficients must have shape (4, M-1, 2K)");
    }
    for (std::size_t i = 0; i + 1 < M; ++i) {
        if (!(_x[i + 1] > _x[i])) throw InputError("SplineProfile: breakpoints must increase strictly");
    }
    for (double c : _c) {
        if (!std::isfinite(c)) throw InputError("SplineProfile: non-finite coefficient");
    }
}

void SplineProfile::evaluate(double n, ProfileValues& out) const {
    if (!(n > 0.0) || !std::isfinite(n)) throw InputError("SplineProfile: Sersic index must be finite and > 0");
    double x = std::log(n);
    std::size_t M = _x.size();
    std::size_t nInt = M - 1;
    // Interval i with x_i <= x < x_{i+1}, clamped to the end intervals (extrapolation).
    std::size_t i = std::upper_bound(_x.begin(), _x.end(), x) - _x.begin();
    i = i == 0 ? 0 : std::min(i - 1, nInt - 1);
    double t = x - _x[i];
    int V = 2 * _K;
    std::vector<double> val(V), dval(V);
    for (int j = 0; j < V; ++j) {
        double c0 = _c[(0 * nInt + i) * V + j], c1 = _c[(1 * nInt + i) * V + j];
        double c2 = _c[(2 * nInt + i) * V + j], c3 = _c[(3 * nInt + i) * V + j];
        val[j] = ((c0 * t + c1) * t + c2) * t + c3;
        dval[j] = (3.0 * c0 * t + 2.0 * c1) * t + c2;  // d/dx
    }
    out.w.resize(_K);
    out.s.resize(_K);
    out.dw.resize(_K);
    out.ds.resize(_K);
    double sum = 0.0, dsum = 0.0;
    for (int k = 0; k < _K; ++k) {
        sum += val[k];
        dsum += dval[k];
    }
    if (!(sum > 0.0)) throw InputError("SplineProfile: weights sum to <= 0 at this n");
    double dxdn = 1.0 / n;
    for (int k = 0; k < _K; ++k) {
        out.w[k] = val[k] / sum;
        out.dw[k] = (dval[k] * sum - val[k] * dsum) / (sum * sum) * dxdn;
        out.s[k] = std::exp(val[_K + k]);
        out.ds[k] = out.s[k] * dval[_K + k] * dxdn;
    }
    // Far outside the breakpoints the extrapolated cubics overflow: refuse rather than return inf sizes.
    for (int k = 0; k < _K; ++k) {
        if (!(std::isfinite(out.w[k]) && std::isfinite(out.dw[k]) && std::isfinite(out.s[k]) &&
              std::isfinite(out.ds[k]) && out.s[k] > 0.0)) {
            std::ostringstream os;
            os << "SplineProfile: Sersic index " << n << " is too far outside the tabulated range ["
               << std::exp(_x.front()) << ", " << std::exp(_x.back()) << "]: weights or sizes overflow";
            throw InputError(os.str());
        }
    }
}

}  // namespace galmix
}  // namespace lsst
