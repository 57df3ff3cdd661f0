#include "lsst/galmix/evaluate.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <tuple>
#include <utility>

#include "kernels.h"
#include "lsst/galmix/simd.h"

namespace lsst {
namespace galmix {

namespace {

using detail::DPre;
using detail::GPre;
using detail::GroupTerm;
using detail::kMaxBlock;

constexpr double kTwoPi = 6.283185307179586476925286766559;

// The normal-equation path (see setNormalPath); all are bit-identical.
std::atomic<NormalPath> gNormalPath{NormalPath::Auto};

GPre precompute(Gaussian const& g) {
    double det = g.xx * g.yy - g.xy * g.xy;
    GPre p;
    p.cx = g.x;
    p.cy = g.y;
    p.ixx = g.yy / det;
    p.ixy = -g.xy / det;
    p.iyy = g.xx / det;
    p.rixx = 1.0 / p.ixx;
    p.unit = 1.0 / (kTwoPi * std::sqrt(det));
    p.flux = g.flux;
    p.dBegin = p.dEnd = 0;
    p.fluxGroup = p.cenBegin = p.cenEnd = p.covBegin = p.covEnd = -1;
    p.alone = false;
    p.tiles = 0;
    return p;
}

// Appends `part` to `terms` as a new group, or returns the group of the previous Gaussian (`prev`: its
// [begin, end)) when its terms are the same: consecutive Gaussians with the same parts share a group.
std::pair<int, int> groupOf(std::vector<GroupTerm> const& part, std::pair<int, int> prev,
                            std::vector<GroupTerm>& terms) {
    if (part.empty()) return {-1, -1};
    auto same = [](GroupTerm const& x, GroupTerm const& y) {
        return x.col == y.col && x.a == y.a && x.b == y.b && x.c == y.c;
    };
    if (prev.first >= 0 && prev.second - prev.first == static_cast<int>(part.size()) &&
        std::equal(part.begin(), part.end(), terms.begin() + prev.first, same)) {
        return prev;
    }
    int begin = static_cast<int>(terms.size());
    terms.insert(terms.end(), part.begin(), part.end());
    return {begin, static_cast<int>(terms.size())};
}

// Zero-initialised, 64-byte aligned doubles.
class AlignedBuffer {
public:
    explicit AlignedBuffer(std::size_t n) : _storage(n + 8, 0.0) {
        auto addr = reinterpret_cast<std::uintptr_t>(_storage.data());
        addr = (addr + 63) & ~static_cast<std::uintptr_t>(63);
        _ptr = reinterpret_cast<double*>(addr);
    }
    double* data() { return _ptr; }

private:
    std::vector<double> _storage;
    double* _ptr;
};

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
    // The model's own rule (overflowing or rounded-away determinants included), not a weaker copy.
    for (std::size_t i = 0; i < mixture.size(); ++i) checkGaussian(mixture[i], "Gaussian", i);
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

void setNormalPath(NormalPath path) { gNormalPath.store(path, std::memory_order_relaxed); }

NormalPath normalPath() { return gNormalPath.load(std::memory_order_relaxed); }

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
    auto const& kernels = detail::activeKernels();
    std::vector<double> row(out.nx);
    for (std::ptrdiff_t y = 0; y < out.ny; ++y) {
        kernels.imageRow(gs.data(), static_cast<int>(gs.size()), out.y0 + y, out.x0, static_cast<int>(out.nx),
                         row.data());
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
    auto const& kernels = detail::activeKernels();
    double chi2 = 0.0;
    for (auto const& run : image.runs()) {
        loadRun(image.ref(), run, data.data(), w.data());
        chi2 += kernels.chi2Run(gs.data(), static_cast<int>(gs.size()), image.y0() + run.row,
                                image.x0() + run.begin, run.end - run.begin, data.data(), w.data(), m.data());
    }
    return chi2;
}

void accumulateNormalEquations(Mixture const& mixture, std::vector<GaussianDeriv> const& derivs,
                               PreparedImage const& image, NormalEquations& out,
                               std::vector<int> const& columns, double* columnImages) {
    int P = out.nParams;
    for (int c : columns) {
        if (c < 0 || c >= P) throw InputError("recorded column out of range");
    }
    int nCols = columnImages ? static_cast<int>(columns.size()) : 0;
    auto gs = prepareMixture(mixture);
    // Group derivatives by Gaussian (a counting sort into one array: this runs for every band of every
    // evaluation), merging repeated (gaussian, column) pairs.
    std::size_t nG = gs.size();
    std::vector<int> start(nG + 1, 0);
    for (auto const& d : derivs) {
        if (d.gaussian < 0 || d.gaussian >= static_cast<int>(nG)) {
            throw InputError("derivative refers to a Gaussian that does not exist");
        }
        if (d.column < 0 || d.column >= P) continue;
        for (double v : d.d) {
            if (!std::isfinite(v)) throw InputError("non-finite Gaussian derivative");
        }
        ++start[d.gaussian + 1];
    }
    for (std::size_t g = 0; g < nG; ++g) start[g + 1] += start[g];
    std::vector<GaussianDeriv> grouped(start[nG]);
    std::vector<int> count(nG, 0);
    for (auto const& d : derivs) {
        if (d.column < 0 || d.column >= P) continue;
        int g = d.gaussian;
        GaussianDeriv* first = grouped.data() + start[g];
        GaussianDeriv* end = first + count[g];
        GaussianDeriv* it = std::find_if(first, end, [&](GaussianDeriv const& o) { return o.column == d.column; });
        if (it == end) {
            *end = d;
            ++count[g];
        } else {
            for (int k = 0; k < 6; ++k) it->d[k] += d.d[k];
        }
    }
    // Each Gaussian's derivatives split into flux parts and the terms of its centre and covariance groups
    // (kernels.h). The derivative coefficients are (dflux, dcx, dcy, dCxx, dCxy, dCyy) of the Gaussian.
    std::vector<DPre> ds;
    ds.reserve(grouped.size());
    std::vector<GroupTerm> terms;
    std::vector<GroupTerm> centre, covariance;  // one Gaussian's parts, reused
    std::pair<int, int> cen{-1, -1}, cov{-1, -1};
    for (std::size_t g = 0; g < nG; ++g) {
        GaussianDeriv const* first = grouped.data() + start[g];
        GaussianDeriv const* last = first + count[g];
        // Sorted by column, so that the same parts compare equal whatever order the model listed them in.
        std::sort(grouped.begin() + start[g], grouped.begin() + start[g] + count[g],
                  [](GaussianDeriv const& x, GaussianDeriv const& y) { return x.column < y.column; });
        centre.clear();
        covariance.clear();
        gs[g].dBegin = static_cast<int>(ds.size());
        for (GaussianDeriv const* d = first; d < last; ++d) {
            auto const& c = d->d;
            if (c[0] != 0.0) ds.push_back({d->column, c[0]});
            if (c[1] != 0.0 || c[2] != 0.0) centre.push_back({d->column, c[1], c[2], 0.0});
            if (c[3] != 0.0 || c[4] != 0.0 || c[5] != 0.0) {
                covariance.push_back({d->column, 0.5 * c[3], c[4], 0.5 * c[5]});
            }
        }
        gs[g].dEnd = static_cast<int>(ds.size());
        if (gs[g].dEnd > gs[g].dBegin) {
            // The same flux columns as the previous Gaussian: the same flux group.
            GPre const* prev = g > 0 ? &gs[g - 1] : nullptr;
            bool same = prev && prev->fluxGroup >= 0 &&
                        prev->dEnd - prev->dBegin == gs[g].dEnd - gs[g].dBegin &&
                        std::equal(ds.begin() + gs[g].dBegin, ds.end(), ds.begin() + prev->dBegin,
                                   [](DPre const& x, DPre const& y) { return x.col == y.col; });
            gs[g].fluxGroup = same ? prev->fluxGroup : static_cast<int>(g);
        }
        cen = groupOf(centre, cen, terms);
        cov = groupOf(covariance, cov, terms);
        std::tie(gs[g].cenBegin, gs[g].cenEnd) = cen;
        std::tie(gs[g].covBegin, gs[g].covEnd) = cov;
    }
    for (std::size_t g = 0; g < nG; ++g) {
        auto shares = [&](std::size_t o) {
            return (gs[o].fluxGroup >= 0 && gs[o].fluxGroup == gs[g].fluxGroup) ||
                   (gs[o].covBegin >= 0 && gs[o].covBegin == gs[g].covBegin);
        };
        gs[g].alone = !(g > 0 && shares(g - 1)) && !(g + 1 < nG && shares(g + 1));
    }
    auto const& kernels = detail::activeKernels();
    int lanes = kernels.lanes;
    // The sparse kernel path needs each Gaussian's column tiles, one bit per tile. Auto takes it only
    // where it can pay: with at least kMinSparseTiles tiles (below that its bookkeeping costs more than
    // it skips: PSF fits of 2 Gaussians, P = 10, ran 5% (AVX2) to 15% (AVX-512) slower sparse, of 4
    // Gaussians, P = 18, 2-8% faster) and if some Gaussian misses a tile another one has (otherwise
    // every block touches the same tiles: single sources).
    constexpr int kMinSparseTiles = 5;
    NormalPath path = gNormalPath.load(std::memory_order_relaxed);
    int nTiles = (P + kernels.tile - 1) / kernels.tile;
    bool sparse = path != NormalPath::Dense && nTiles <= detail::kMaxSparseTiles &&
                  (path == NormalPath::Sparse || nTiles >= kMinSparseTiles);
    if (sparse) {
        unsigned long long all = 0;
        for (auto& g : gs) {
            auto tile = [&](int col) { g.tiles |= 1ull << (col / kernels.tile); };
            for (int i = g.dBegin; i < g.dEnd; ++i) tile(ds[i].col);
            for (int t = g.cenBegin; t < g.cenEnd; ++t) tile(terms[t].col);
            for (int t = g.covBegin; t < g.covEnd; ++t) tile(terms[t].col);
            all |= g.tiles;
        }
        if (path == NormalPath::Auto) {
            sparse = std::any_of(gs.begin(), gs.end(), [all](detail::GPre const& g) { return g.tiles != all; });
        }
    }
    std::ptrdiff_t L = maxRunLength(image);
    std::ptrdiff_t padded = ((L + kMaxBlock - 1) / kMaxBlock) * kMaxBlock;
    std::vector<double> data(padded, 0.0), w(padded, 0.0);
    std::size_t nP = static_cast<std::size_t>(std::max(P, 1));
    std::size_t nPt = nP + detail::kMaxTile;  // >= P rounded up to any table's tile
    AlignedBuffer gconst(gs.size() * detail::kGaussConstDoubles), rows(gs.size() * detail::kRowDoubles),
            jac(nPt * detail::kDepthPixels),
            wjac(nPt * detail::kDepthPixels), acc(nPt * nPt * kMaxBlock), bacc(nP * kMaxBlock), cacc(kMaxBlock);
    int stride = nTiles * kernels.tile;
    int ready = 0;
    std::vector<double> cols(static_cast<std::size_t>(nCols) * padded);
    detail::NormalScratch scratch{gconst.data(), &ready, rows.data(), jac.data(), wjac.data(), acc.data(),
                                  bacc.data(), cacc.data(), sparse, cols.data(), columns.data(), nCols,
                                  padded};
    std::ptrdiff_t const nx = image.ref().nx, plane = image.ref().ny * nx;
    for (auto const& run : image.runs()) {
        int n = run.end - run.begin;
        loadRun(image.ref(), run, data.data(), w.data());
        int nPad = ((n + kMaxBlock - 1) / kMaxBlock) * kMaxBlock;
        std::fill(data.begin() + n, data.begin() + nPad, 0.0);
        std::fill(w.begin() + n, w.begin() + nPad, 0.0);
        kernels.normalRun(gs.data(), static_cast<int>(gs.size()), ds.data(), terms.data(),
                          image.y0() + run.row, image.x0() + run.begin, n, data.data(), w.data(), P, scratch);
        for (int j = 0; j < nCols; ++j) {
            std::copy_n(cols.data() + j * padded, n, columnImages + j * plane + run.row * nx + run.begin);
        }
    }
    auto sum = [lanes](double const* v) {
        double s = 0.0;
        for (int l = 0; l < lanes; ++l) s += v[l];
        return s;
    };
    out.chi2 += sum(scratch.cacc);
    for (int c = 0; c < P; ++c) {
        out.b[c] += sum(scratch.bacc + c * lanes);
        for (int c2 = 0; c2 <= c; ++c2) {
            double h = sum(scratch.acc + (static_cast<std::ptrdiff_t>(c) * stride + c2) * lanes);
            out.H[c * P + c2] += h;
            if (c2 != c) out.H[c2 * P + c] += h;
        }
    }
}

}  // namespace galmix
}  // namespace lsst
