#include "lsst/galmix/evaluate.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "lsst/galmix/fastexp.h"
#include "lsst/galmix/simd.h"

namespace lsst {
namespace galmix {

namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
// fastExp returns exactly 0 below -708, so skipping pixels where the exponent is below -kCut is exact.
constexpr double kCut = 708.0;

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
                                   int& hi) {
    double dy = ypix - p.cy;
    double bq = p.ixy * dy;
    double disc = bq * bq - p.ixx * (p.iyy * dy * dy - 2.0 * kCut);
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
    for (int i = 0; i < n; ++i) m[i] = 0.0;
    double x0r = x0 + begin;
    for (int g = 0; g < nG; ++g) {
        GPre const& p = gs[g];
        int lo, hi;
        if (!rowRange(p, ypix, x0r, 0, n, lo, hi)) continue;
        double dy = ypix - p.cy;
        double a = -0.5 * p.ixx, b = -p.ixy * dy, c = -0.5 * p.iyy * dy * dy;
        double amp = p.flux * p.unit;
        double base = x0r - p.cx;
        for (int i = lo; i < hi; ++i) {
            double dx = base + i;
            m[i] += amp * fastExp((a * dx + b) * dx + c);
        }
    }
    double chi2 = 0.0;
#pragma omp simd reduction(+ : chi2)
    for (int i = 0; i < n; ++i) {
        double r = data[i] - m[i];
        chi2 += w[i] * r * r;
    }
    return chi2;
}

// Normal equations of one run. J (P x stride) and the other buffers are scratch; Hl is the lower
// triangle (row-major P x P) and b the right-hand side, both accumulated.
GALMIX_CLONES double kernelNormalRun(GPre const* gs, int nG, DPre const* ds, double ypix, double x0,
                                     int begin, int n, double const* data, double const* w, int P,
                                     std::ptrdiff_t stride, double* J, double* m, double* e, double* ux,
                                     double* uy, double* Hl, double* bv) {
    for (int i = 0; i < n; ++i) m[i] = 0.0;
    for (int c = 0; c < P; ++c) {
        double* Jc = J + c * stride;
        for (int i = 0; i < n; ++i) Jc[i] = 0.0;
    }
    double x0r = x0 + begin;
    for (int g = 0; g < nG; ++g) {
        GPre const& p = gs[g];
        int lo, hi;
        if (!rowRange(p, ypix, x0r, 0, n, lo, hi)) continue;
        double dy = ypix - p.cy;
        double a = -0.5 * p.ixx, b = -p.ixy * dy, c = -0.5 * p.iyy * dy * dy;
        double unit = p.unit, flux = p.flux;
        double base = x0r - p.cx;
        double ixx = p.ixx, ixy = p.ixy, iyy = p.iyy;
        double uxdy = ixy * dy, uydy = iyy * dy;
        for (int i = lo; i < hi; ++i) {
            double dx = base + i;
            double ev = unit * fastExp((a * dx + b) * dx + c);
            e[i] = ev;
            m[i] += flux * ev;
            ux[i] = ixx * dx + uxdy;
            uy[i] = ixy * dx + uydy;
        }
        for (int k = p.dBegin; k < p.dEnd; ++k) {
            DPre const& d = ds[k];
            double* Jc = J + d.col * stride;
            double k0 = d.k[0], k1 = d.k[1], k2 = d.k[2], k3 = d.k[3], k4 = d.k[4], k5 = d.k[5];
            if (d.kind == 0) {
                for (int i = lo; i < hi; ++i) Jc[i] += k0 * e[i];
            } else if (d.kind == 1) {
                for (int i = lo; i < hi; ++i) Jc[i] += e[i] * (k1 * ux[i] + k2 * uy[i]);
            } else {
                for (int i = lo; i < hi; ++i) {
                    double vx = ux[i], vy = uy[i];
                    Jc[i] += e[i] * (k0 + vx * (k1 + k3 * vx + k4 * vy) + vy * (k2 + k5 * vy));
                }
            }
        }
    }
    double chi2 = 0.0;
    // m becomes the weighted residual w r; e becomes r.
#pragma omp simd reduction(+ : chi2)
    for (int i = 0; i < n; ++i) {
        double r = data[i] - m[i];
        e[i] = r;
        m[i] = w[i] * r;
        chi2 += w[i] * r * r;
    }
    for (int c = 0; c < P; ++c) {
        double const* Jc = J + c * stride;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < n; ++i) s += m[i] * Jc[i];
        bv[c] += s;
        // ux := w J_c, reused for the row of H
        for (int i = 0; i < n; ++i) ux[i] = w[i] * Jc[i];
        for (int c2 = 0; c2 <= c; ++c2) {
            double const* Jc2 = J + c2 * stride;
            double t = 0.0;
#pragma omp simd reduction(+ : t)
            for (int i = 0; i < n; ++i) t += ux[i] * Jc2[i];
            Hl[c * P + c2] += t;
        }
    }
    return chi2;
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
    std::ptrdiff_t stride = ((L + 7) / 8) * 8;
    std::vector<double> data(L), w(L), m(L), e(L), ux(L), uy(L);
    std::vector<double> J(static_cast<std::size_t>(std::max(P, 1)) * stride);
    std::vector<double> Hl(static_cast<std::size_t>(P) * P, 0.0);
    double chi2 = 0.0;
    for (auto const& run : image.runs()) {
        loadRun(image.ref(), run, data.data(), w.data());
        chi2 += kernelNormalRun(gs.data(), static_cast<int>(gs.size()), ds.data(), image.y0() + run.row,
                                image.x0(), run.begin, run.end - run.begin, data.data(), w.data(), P, stride,
                                J.data(), m.data(), e.data(), ux.data(), uy.data(), Hl.data(), out.b.data());
    }
    out.chi2 += chi2;
    for (int c = 0; c < P; ++c) {
        for (int c2 = 0; c2 <= c; ++c2) {
            out.H[c * P + c2] += Hl[c * P + c2];
            if (c2 != c) out.H[c2 * P + c] += Hl[c * P + c2];
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
