#include "lsst/galmix/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>

#include "lsst/galmix/fastexp.h"
#include "lsst/galmix/simd.h"

// Block vectors never cross an ABI boundary (all kernels are internal), so the vector-ABI note is noise.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace lsst {
namespace galmix {

namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
// A Gaussian is skipped where its exponent is below -kCut, i.e. beyond sqrt(2 kCut) = 8.9 sigma along
// its own metric: the terms dropped are below exp(-40) = 4e-18 of that Gaussian's peak, under double
// precision (2^-53 = 1.1e-16) of the peak by a factor 26, so images, chi2 and derivatives are unchanged
// at double precision relative to the peak.
constexpr double kCut = 40.0;
// The normal equations of a fit use a tighter cut, exp(-25) = 1.4e-11 of each Gaussian's peak (7.1 sigma):
// the flux a Gaussian loses there is 1.4e-11 of its own, and chi2 changes by far less than any step the
// optimizer takes, while the evaluated area shrinks by (7.1 / 8.9)^2 = 0.63 for compact Gaussians.
constexpr double kCutFit = 25.0;

// A Gaussian ready for evaluation: inverse covariance, normalisation, and its slice of derivatives.
struct GPre {
    double cx, cy, ixx, ixy, iyy, unit, flux;
    int dBegin, dEnd;
};

// d(model)/d(param) for one Gaussian = e * (k0 + k1 ux + k2 uy + k3 ux^2 + k4 ux uy + k5 uy^2), with
// e = exp(-Q/2) / (2 pi sqrt(det)) and u = C^{-1} (p - centre). kind: 0 flux only, 1 centre only, 2 general.
struct DPre {
    int col, kind;
    double k[6];
};

GPre precompute(Gaussian const& g) {
    double det = g.xx * g.yy - g.xy * g.xy;
    GPre p;
    p.cx = g.x;
    p.cy = g.y;
    p.ixx = g.yy / det;
    p.ixy = -g.xy / det;
    p.iyy = g.xx / det;
    p.unit = 1.0 / (kTwoPi * std::sqrt(det));
    p.flux = g.flux;
    p.dBegin = p.dEnd = 0;
    return p;
}

DPre precomputeDeriv(GPre const& p, GaussianDeriv const& d, int col) {
    // dv/dflux = e; dv/dcx = v ux; dv/dcy = v uy; dv/dCxx = v (ux^2 - ixx)/2; dv/dCxy = v (ux uy - ixy);
    // dv/dCyy = v (uy^2 - iyy)/2, with v = flux e.
    DPre o;
    o.col = col;
    double f = p.flux;
    auto const& c = d.d;
    o.k[0] = c[0] - f * (0.5 * c[3] * p.ixx + c[4] * p.ixy + 0.5 * c[5] * p.iyy);
    o.k[1] = f * c[1];
    o.k[2] = f * c[2];
    o.k[3] = 0.5 * f * c[3];
    o.k[4] = f * c[4];
    o.k[5] = 0.5 * f * c[5];
    bool cov = (c[3] != 0.0 || c[4] != 0.0 || c[5] != 0.0);
    bool cen = (c[1] != 0.0 || c[2] != 0.0);
    if (!cov && !cen) {
        o.kind = 0;
    } else if (!cov && c[0] == 0.0) {
        o.kind = 1;
    } else {
        o.kind = 2;
    }
    return o;
}

// Pixel index range [lo, hi) within [begin, end) of row `ypix` where the Gaussian's exponent >= -kCut.
GALMIX_ALWAYS_INLINE bool rowRange(GPre const& p, double ypix, double x0, int begin, int end, int& lo,
                                   int& hi, double cut = kCut) {
    double dy = ypix - p.cy;
    double bq = p.ixy * dy;
    double disc = bq * bq - p.ixx * (p.iyy * dy * dy - 2.0 * cut);
    if (!(disc >= 0.0)) return false;
    double s = std::sqrt(disc);
    double base = x0 - p.cx;  // dx of array index 0
    double flo = std::floor((-bq - s) / p.ixx - base) - 1.0;
    double fhi = std::ceil((-bq + s) / p.ixx - base) + 2.0;
    lo = flo <= begin ? begin : (flo >= end ? end : static_cast<int>(flo));
    hi = fhi >= end ? end : (fhi <= begin ? begin : static_cast<int>(fhi));
    return lo < hi;
}

// ---- hot kernels (cloned for AVX2/AVX-512) ----

GALMIX_CLONES void kernelImageRow(GPre const* gs, int nG, double ypix, double x0, int n, double* out) {
    for (int i = 0; i < n; ++i) out[i] = 0.0;
    for (int g = 0; g < nG; ++g) {
        GPre const& p = gs[g];
        int lo, hi;
        if (!rowRange(p, ypix, x0, 0, n, lo, hi)) continue;
        double dy = ypix - p.cy;
        double a = -0.5 * p.ixx, b = -p.ixy * dy, c = -0.5 * p.iyy * dy * dy;
        double amp = p.flux * p.unit;
        double base = x0 - p.cx;
        for (int i = lo; i < hi; ++i) {
            double dx = base + i;
            out[i] += amp * fastExp((a * dx + b) * dx + c);
        }
    }
}

// chi2 of one run; data, w and scratch m hold the run's pixels (index 0 = pixel `begin`).
GALMIX_CLONES double kernelChi2Run(GPre const* gs, int nG, double ypix, double x0, int begin, int n,
                                   double const* data, double const* w, double* m) {
    kernelImageRow(gs, nG, ypix, x0 + begin, n, m);
    double chi2 = 0.0;
#pragma omp simd reduction(+ : chi2)
    for (int i = 0; i < n; ++i) {
        double r = data[i] - m[i];
        chi2 += w[i] * r * r;
    }
    return chi2;
}

// Pixels per block of the normal-equation kernel: one AVX-512 vector of doubles (two AVX2 or four SSE2
// vectors in the other clones). GCC vector extensions keep the block in registers in every clone.
constexpr int kBlock = 8;
typedef double VD __attribute__((vector_size(8 * kBlock)));
typedef unsigned long long VU __attribute__((vector_size(8 * kBlock)));

// fastExp on a block: same reduction and polynomial, evaluated by Estrin's scheme (agrees to ~1 ulp).
GALMIX_ALWAYS_INLINE VD blockExp(VD x) {
    constexpr double log2e = 1.4426950408889634074;
    constexpr double ln2hi = 6.93147180369123816490e-01;
    constexpr double ln2lo = 1.90821492927058770002e-10;
    constexpr double shifter = 6755399441055744.0;
    const VD zero = VD{}, lo = zero - 708.0, hi = zero + 709.0;
    VD xc = x < lo ? lo : (x > hi ? hi : x);
    VD t = xc * log2e + shifter;
    VD k = t - shifter;
    VD r = (xc - k * ln2hi) - k * ln2lo;
    // Estrin's scheme: the same degree-13 Taylor polynomial with a 4-level dependency chain instead of
    // 13 (this kernel is latency-bound: one exp per Gaussian between long derivative updates).
    VD r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    VD p01 = 1.0 + r, p23 = 0.5 + r * (1.0 / 6.0), p45 = 1.0 / 24.0 + r * (1.0 / 120.0);
    VD p67 = 1.0 / 720.0 + r * (1.0 / 5040.0), p89 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    VD p1011 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0), p1213 = 1.0 / 479001600.0 + r * (1.0 / 6227020800.0);
    VD q0 = p01 + r2 * p23, q1 = p45 + r2 * p67, q2 = p89 + r2 * p1011;
    VD s0 = q0 + r4 * q1, s1 = q2 + r4 * p1213;
    VD p = s0 + r8 * s1;
    VU bits = ((VU)t + 1023u) << 52;
    VD res = p * (VD)bits;
    return x < lo ? zero : res;
}

GALMIX_ALWAYS_INLINE VD loadBlock(double const* p) {
    VD v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

GALMIX_ALWAYS_INLINE double sumBlock(VD v) {
    double s = 0.0;
    for (int l = 0; l < kBlock; ++l) s += v[l];
    return s;
}

// Zero-initialised, 64-byte aligned storage for n blocks (std::vector<VD> does not guarantee the
// alignment of over-aligned types across all allocators in use here).
class BlockBuffer {
public:
    explicit BlockBuffer(std::size_t n) : _storage((n + 1) * kBlock, 0.0) {
        auto addr = reinterpret_cast<std::uintptr_t>(_storage.data());
        addr = (addr + sizeof(VD) - 1) & ~static_cast<std::uintptr_t>(sizeof(VD) - 1);
        _ptr = reinterpret_cast<VD*>(addr);
    }
    VD* data() { return _ptr; }
    VD& operator[](std::size_t i) { return _ptr[i]; }

private:
    std::vector<double> _storage;
    VD* _ptr;
};

// Per-run constants of a Gaussian for the normal-equation kernel.
struct GRow {
    double a, b, c, unit, flux, base, ixx, ixy, uxdy, uydy;
    int lo, hi, dBegin, dEnd;
};

// Normal equations of one run, in blocks of kBlock pixels: for each block every Gaussian is evaluated
// once (one exp) and its derivative polynomials are accumulated into the block's Jacobian rows Jl
// (P blocks), then J^T W J, J^T W r and chi2 go to per-lane accumulators (no horizontal sums in the
// loop). data and w are padded with zeros to a multiple of kBlock (zero weight: no effect).
// acc: lower triangle P x P blocks; bacc: P blocks; cacc: one block.
GALMIX_CLONES void kernelNormalRun(GPre const* gs, int nG, DPre const* ds, double ypix, double x0, int begin,
                                   int n, double const* data, double const* w, int P, GRow* rows, VD* Jl,
                                   VD* acc, VD* bacc, VD* cacc) {
    double x0r = x0 + begin;
    int nRows = 0;
    for (int g = 0; g < nG; ++g) {
        GPre const& p = gs[g];
        int lo, hi;
        if (!rowRange(p, ypix, x0r, 0, n, lo, hi, kCutFit)) continue;
        double dy = ypix - p.cy;
        rows[nRows++] = {-0.5 * p.ixx, -p.ixy * dy, -0.5 * p.iyy * dy * dy, p.unit, p.flux, x0r - p.cx, p.ixx,
                         p.ixy, p.ixy * dy, p.iyy * dy, lo, hi, p.dBegin, p.dEnd};
    }
    VD iota;
    for (int l = 0; l < kBlock; ++l) iota[l] = l;
    VD zero = iota - iota;
    for (int i0 = 0; i0 < n; i0 += kBlock) {
        VD m = zero;
        bool touched = false;
        for (int r = 0; r < nRows; ++r) {
            GRow const& q = rows[r];
            // Lanes outside [lo, hi) are evaluated too: they get true (tiny) values.
            if (q.hi <= i0 || q.lo >= i0 + kBlock) continue;
            if (!touched) {
                for (int c = 0; c < P; ++c) Jl[c] = zero;
                touched = true;
            }
            VD dx = iota + (q.base + i0);
            VD e = q.unit * blockExp((q.a * dx + q.b) * dx + q.c);
            m += q.flux * e;
            VD ux = q.ixx * dx + q.uxdy;
            VD uy = q.ixy * dx + q.uydy;
            for (int k = q.dBegin; k < q.dEnd; ++k) {
                DPre const& d = ds[k];
                VD& J = Jl[d.col];
                if (d.kind == 0) {
                    J += d.k[0] * e;
                } else if (d.kind == 1) {
                    J += e * (d.k[1] * ux + d.k[2] * uy);
                } else {
                    J += e * (d.k[0] + ux * (d.k[1] + d.k[3] * ux + d.k[4] * uy) + uy * (d.k[2] + d.k[5] * uy));
                }
            }
        }
        VD wl = loadBlock(w + i0);
        VD res = loadBlock(data + i0) - m;
        *cacc += wl * res * res;
        if (!touched) continue;  // no Gaussian reaches this block: J = 0, only chi2 changes
        for (int c = 0; c < P; ++c) {
            VD wJ = wl * Jl[c];
            bacc[c] += wJ * res;
            VD* a = acc + c * P;
            for (int c2 = 0; c2 <= c; ++c2) a[c2] += wJ * Jl[c2];
        }
    }
}

template <typename T>
void copyRow(void const* base, std::ptrdiff_t offset, int n, double* out) {
    T const* p = static_cast<T const*>(base) + offset;
    for (int i = 0; i < n; ++i) out[i] = static_cast<double>(p[i]);
}

void loadRow(void const* base, DType dt, std::ptrdiff_t offset, int n, double* out) {
    if (dt == DType::F32) {
        copyRow<float>(base, offset, n, out);
    } else {
        copyRow<double>(base, offset, n, out);
    }
}

// Data and weights of one run as doubles.
void loadRun(ImageRef const& ref, PixelRun const& run, double* data, double* w) {
    int n = run.end - run.begin;
    loadRow(ref.data, ref.dtype, run.row * ref.rowStride + run.begin, n, data);
    if (ref.sigmaInv) {
        loadRow(ref.sigmaInv, ref.sigmaDtype, run.row * ref.sigmaRowStride + run.begin, n, w);
        for (int i = 0; i < n; ++i) w[i] *= w[i];
    } else {
        for (int i = 0; i < n; ++i) w[i] = 1.0;
    }
}

// True if every pixel of the row has finite data and a finite, positive weight (the common case,
// checked branch-free; rows failing it go through the detailed per-pixel check).
bool rowAllValid(double const* data, double const* sigmaInv, int n) {
    constexpr double big = 1e150;  // sigmaInv^2 must stay finite
    int bad = 0;
    for (int i = 0; i < n; ++i) {
        double s = sigmaInv ? sigmaInv[i] : 1.0;
        double d = data[i];
        // NaN fails every comparison, so these also reject NaN.
        bad |= !(s > 0.0 && s < big && d > -HUGE_VAL && d < HUGE_VAL);
    }
    return bad == 0;
}

std::vector<GPre> prepareMixture(Mixture const& mixture) {
    checkMixture(mixture);
    std::vector<GPre> out;
    out.reserve(mixture.size());
    for (auto const& g : mixture) out.push_back(precompute(g));
    return out;
}

std::ptrdiff_t maxRunLength(PreparedImage const& image) {
    std::ptrdiff_t n = 0;
    for (auto const& r : image.runs()) n = std::max<std::ptrdiff_t>(n, r.end - r.begin);
    return n;
}

}  // namespace

void checkMixture(Mixture const& mixture) {
    for (std::size_t i = 0; i < mixture.size(); ++i) {
        auto const& g = mixture[i];
        bool finite = std::isfinite(g.flux) && std::isfinite(g.x) && std::isfinite(g.y) &&
                      std::isfinite(g.xx) && std::isfinite(g.xy) && std::isfinite(g.yy);
        if (!finite) {
            std::ostringstream os;
            os << "Gaussian " << i << " has non-finite values";
            throw InputError(os.str());
        }
        if (!(g.xx > 0.0 && g.yy > 0.0 && g.xx * g.yy - g.xy * g.xy > 0.0)) {
            std::ostringstream os;
            os << "Gaussian " << i << " has a covariance that is not positive definite (xx=" << g.xx
               << ", xy=" << g.xy << ", yy=" << g.yy << ")";
            throw InputError(os.str());
        }
    }
}

PreparedImage::PreparedImage(ImageRef const& ref) : _ref(ref) {
    if (ref.ny <= 0 || ref.nx <= 0 || !ref.data) throw InputError("image is empty");
    if (!std::isfinite(ref.x0) || !std::isfinite(ref.y0)) throw InputError("image origin is not finite");
    std::vector<double> data(ref.nx), w(ref.nx);
    for (std::ptrdiff_t y = 0; y < ref.ny; ++y) {
        PixelRun whole{static_cast<int>(y), 0, static_cast<int>(ref.nx)};
        loadRow(ref.data, ref.dtype, y * ref.rowStride, ref.nx, data.data());
        if (ref.sigmaInv) {
            loadRow(ref.sigmaInv, ref.sigmaDtype, y * ref.sigmaRowStride, ref.nx, w.data());
        }
        if (rowAllValid(data.data(), ref.sigmaInv ? w.data() : nullptr, static_cast<int>(ref.nx))) {
            _runs.push_back(whole);
            _nPix += ref.nx;
            continue;
        }
        int start = -1;
        for (std::ptrdiff_t x = 0; x <= ref.nx; ++x) {
            bool on = false;
            if (x < ref.nx) {
                double s = ref.sigmaInv ? w[x] : 1.0;
                if (!std::isfinite(s) || s < 0.0 || !std::isfinite(s * s)) {
                    std::ostringstream os;
                    os << "inverse sigma at [" << y << ", " << x << "] is " << s
                       << " (must be finite and >= 0; use 0 to mask a pixel)";
                    throw InputError(os.str());
                }
                on = s > 0.0;
                if (on && !std::isfinite(data[x])) {
                    std::ostringstream os;
                    os << "image value at [" << y << ", " << x << "] is " << data[x]
                       << " where the weight is non-zero";
                    throw InputError(os.str());
                }
            }
            if (on && start < 0) start = static_cast<int>(x);
            if (!on && start >= 0) {
                _runs.push_back({whole.row, start, static_cast<int>(x)});
                _nPix += x - start;
                start = -1;
            }
        }
    }
}

NormalEquations makeNormalEquations(int nParams) {
    NormalEquations ne;
    ne.nParams = nParams;
    ne.H.assign(static_cast<std::size_t>(nParams) * nParams, 0.0);
    ne.b.assign(nParams, 0.0);
    return ne;
}

void renderImage(Mixture const& mixture, OutImageRef const& out) {
    if (out.ny <= 0 || out.nx <= 0 || !out.data) throw InputError("output image is empty");
    auto gs = prepareMixture(mixture);
    std::vector<double> row(out.nx);
    for (std::ptrdiff_t y = 0; y < out.ny; ++y) {
        kernelImageRow(gs.data(), static_cast<int>(gs.size()), out.y0 + y, out.x0,
                       static_cast<int>(out.nx), row.data());
        if (out.dtype == DType::F32) {
            float* p = static_cast<float*>(out.data) + y * out.rowStride;
            for (std::ptrdiff_t i = 0; i < out.nx; ++i) p[i] = static_cast<float>(row[i]);
        } else {
            double* p = static_cast<double*>(out.data) + y * out.rowStride;
            std::copy(row.begin(), row.end(), p);
        }
    }
}

double computeChi2(Mixture const& mixture, PreparedImage const& image) {
    auto gs = prepareMixture(mixture);
    std::ptrdiff_t L = maxRunLength(image);
    std::vector<double> data(L), w(L), m(L);
    double chi2 = 0.0;
    for (auto const& run : image.runs()) {
        loadRun(image.ref(), run, data.data(), w.data());
        chi2 += kernelChi2Run(gs.data(), static_cast<int>(gs.size()), image.y0() + run.row, image.x0(),
                              run.begin, run.end - run.begin, data.data(), w.data(), m.data());
    }
    return chi2;
}

void accumulateNormalEquations(Mixture const& mixture, std::vector<GaussianDeriv> const& derivs,
                               PreparedImage const& image, NormalEquations& out) {
    int P = out.nParams;
    auto gs = prepareMixture(mixture);
    // Group derivatives by Gaussian, merging repeated (gaussian, column) pairs.
    std::vector<std::vector<GaussianDeriv>> byG(gs.size());
    for (auto const& d : derivs) {
        if (d.gaussian < 0 || d.gaussian >= static_cast<int>(gs.size())) {
            throw InputError("derivative refers to a Gaussian that does not exist");
        }
        if (d.column < 0 || d.column >= P) continue;
        for (double v : d.d) {
            if (!std::isfinite(v)) throw InputError("non-finite Gaussian derivative");
        }
        auto& lst = byG[d.gaussian];
        auto it = std::find_if(lst.begin(), lst.end(), [&](GaussianDeriv const& o) { return o.column == d.column; });
        if (it == lst.end()) {
            lst.push_back(d);
        } else {
            for (int k = 0; k < 6; ++k) it->d[k] += d.d[k];
        }
    }
    std::vector<DPre> ds;
    for (std::size_t g = 0; g < gs.size(); ++g) {
        gs[g].dBegin = static_cast<int>(ds.size());
        for (auto const& d : byG[g]) {
            bool zero = std::all_of(d.d.begin(), d.d.end(), [](double v) { return v == 0.0; });
            if (!zero) ds.push_back(precomputeDeriv(gs[g], d, d.column));
        }
        gs[g].dEnd = static_cast<int>(ds.size());
    }
    std::ptrdiff_t L = maxRunLength(image);
    std::ptrdiff_t padded = ((L + kBlock - 1) / kBlock) * kBlock;
    std::vector<double> data(padded, 0.0), w(padded, 0.0);
    std::vector<GRow> rows(gs.size());
    BlockBuffer Jl(std::max(P, 1)), acc(static_cast<std::size_t>(P) * P), bacc(P), cacc(1);
    for (auto const& run : image.runs()) {
        int n = run.end - run.begin;
        loadRun(image.ref(), run, data.data(), w.data());
        int nPad = ((n + kBlock - 1) / kBlock) * kBlock;
        std::fill(data.begin() + n, data.begin() + nPad, 0.0);
        std::fill(w.begin() + n, w.begin() + nPad, 0.0);
        kernelNormalRun(gs.data(), static_cast<int>(gs.size()), ds.data(), image.y0() + run.row, image.x0(),
                        run.begin, n, data.data(), w.data(), P, rows.data(), Jl.data(), acc.data(), bacc.data(),
                        cacc.data());
    }
    out.chi2 += sumBlock(cacc[0]);
    for (int c = 0; c < P; ++c) {
        out.b[c] += sumBlock(bacc[c]);
        for (int c2 = 0; c2 <= c; ++c2) {
            double h = sumBlock(acc[c * P + c2]);
            out.H[c * P + c2] += h;
            if (c2 != c) out.H[c2 * P + c] += h;
        }
    }
}

std::string dispatchInfo() {
    std::ostringstream os;
#if GALMIX_HAVE_CLONES
    __builtin_cpu_init();
    const char* clone = "default (x86-64 baseline)";
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
        clone = "x86-64-v4 (AVX-512)";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        clone = "x86-64-v3 (AVX2+FMA)";
    }
    os << "portable build with runtime dispatch (target_clones); selected clone: " << clone;
#else
    os << "build without clones, compiled for";
#if defined(__AVX512F__)
    os << " AVX-512";
#elif defined(__AVX2__)
    os << " AVX2";
#else
    os << " baseline";
#endif
#if defined(__FMA__)
    os << "+FMA";
#endif
    os << " (e.g. GALMIX_MARCH=native)";
#endif
    return os.str();
}

}  // namespace galmix
}  // namespace lsst
