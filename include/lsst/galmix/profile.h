// Radial profiles as concentric Gaussian mixtures: weights w_k (sum 1) and sizes s_k (units of reff).
#ifndef LSST_GALMIX_PROFILE_H
#define LSST_GALMIX_PROFILE_H

#include <vector>

namespace lsst {
namespace galmix {

/// Weights, sizes and their derivatives with respect to the Sersic index n.
struct ProfileValues {
    std::vector<double> w, s, dw, ds;
};

class Profile {
public:
    virtual ~Profile() = default;
    /// Number of Gaussians K.
    virtual int size() const = 0;
    /// True when the weights and sizes are functions of a Sersic index n (the component then has an n
    /// parameter).
    virtual bool dependsOnN() const = 0;
    /// Weights (normalised to sum 1), sizes and d/dn at index n (n ignored if !dependsOnN()).
    virtual void evaluate(double n, ProfileValues& out) const = 0;
};

/// Fixed weights and sizes (e.g. exponential, de Vaucouleurs, a single Gaussian).
class FixedProfile : public Profile {
public:
    FixedProfile(std::vector<double> weights, std::vector<double> sizes);
    int size() const override { return static_cast<int>(_w.size()); }
    bool dependsOnN() const override { return false; }
    void evaluate(double n, ProfileValues& out) const override;

private:
    std::vector<double> _w, _s;
};

/// Piecewise cubic in x = ln n (scipy PPoly layout): breakpoints x_0 < ... < x_{M-1} and coefficients
/// c[m][i][j] (m = 0..3, highest order first; i = interval; j = value), value j on interval i is
/// sum_m c[m][i][j] (x - x_i)^(3-m); values are [w~_1..w~_K, ln s_1..ln s_K]. Outside the breakpoints
/// the end polynomials are extrapolated (as PPoly does). Weights are w_k = w~_k / sum(w~).
class SplineProfile : public Profile {
public:
    SplineProfile(std::vector<double> breakpoints, std::vector<double> coeffs, int nValues);
    int size() const override { return _K; }
    bool dependsOnN() const override { return true; }
    void evaluate(double n, ProfileValues& out) const override;
    std::vector<double> const& breakpoints() const { return _x; }

private:
    std::vector<double> _x, _c;  // _c laid out [m][interval][value]
    int _K;
};

}  // namespace galmix
}  // namespace lsst

#endif
