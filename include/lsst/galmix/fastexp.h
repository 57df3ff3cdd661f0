// A branch-free polynomial exp that g++ vectorises (with -fno-trapping-math).
#ifndef LSST_GALMIX_FASTEXP_H
#define LSST_GALMIX_FASTEXP_H

#include <cstdint>
#include <cstring>

namespace lsst {
namespace galmix {

/// exp(x) for double, within ~1 ulp of the correctly rounded result for -708 <= x <= 709.78.
/// Returns exactly 0 for x < -708 (std::exp would return a denormal < 3e-308 there) and overflows to
/// +inf above log(DBL_MAX) = 709.78 as std::exp does.
/// Range reduction x = k ln2 + r, |r| <= ln2/2, with Cody-Waite split of ln2, then a degree-13 Taylor
/// polynomial (truncation error < 1e-17 relative) and 2^k built in the exponent bits. The polynomial
/// carries a factor 2 (every coefficient doubled: exact) and the exponent bits 2^(k-1), so that k = 1024
/// (x up to 710, the clamp) still has an exponent field (2^1023) and the final product overflows to inf
/// by itself, with no extra test in the vectorised loops.
inline double fastExp(double x) {
    constexpr double log2e = 1.4426950408889634074;
    constexpr double ln2hi = 6.93147180369123816490e-01;
    constexpr double ln2lo = 1.90821492927058770002e-10;
    constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: rounds to nearest integer
    double xc = x < -708.0 ? -708.0 : (x > 710.0 ? 710.0 : x);
    double t = xc * log2e + shifter;
    double k = t - shifter;
    double r = (xc - k * ln2hi) - k * ln2lo;
    double p = 2.0 / 6227020800.0;
    p = p * r + 2.0 / 479001600.0;
    p = p * r + 2.0 / 39916800.0;
    p = p * r + 2.0 / 3628800.0;
    p = p * r + 2.0 / 362880.0;
    p = p * r + 2.0 / 40320.0;
    p = p * r + 2.0 / 5040.0;
    p = p * r + 2.0 / 720.0;
    p = p * r + 2.0 / 120.0;
    p = p * r + 2.0 / 24.0;
    p = p * r + 2.0 / 6.0;
    p = p * r + 1.0;
    p = p * r + 2.0;
    p = p * r + 2.0;
    std::uint64_t ti;
    std::memcpy(&ti, &t, sizeof(ti));
    // The low bits of t hold k (offset by the shifter's mantissa); k - 1 + 1023 goes to the exponent
    // field (k >= -1021 after the clamp, so the field stays >= 1).
    std::uint64_t bits = (ti + 1022u) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    double res = p * scale;
    return x < -708.0 ? 0.0 : res;
}

}  // namespace galmix
}  // namespace lsst

#endif
