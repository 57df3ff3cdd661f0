#include "lsst/galmix/model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace lsst {
namespace galmix {

namespace {
// Parameters per scene: far beyond any blend, small enough that the bookkeeping (16 bytes each) fits.
constexpr std::size_t kMaxParams = 10000000;
}  // namespace

void shapeMatrix(double eta1, double eta2, double S[3], double dS1[3], double dS2[3]) {
    // S = e^{-|eta|} expm([[eta1, eta2], [eta2, -eta1]]) = A I + B H with A = (1 + E)/2,
    // B = (1 - E)/(2e), E = exp(-2e), e = |eta|: major-axis variance 1, minor q^2 = E.
    double e = std::hypot(eta1, eta2);
    double E = std::exp(-2.0 * e);
    double A = 0.5 * (1.0 + E);
    double dA = -E;  // dA/de
    double B, dB;    // B(e), dB/de
    if (e < 1e-4) {
        B = 1.0 - e + (2.0 / 3.0) * e * e - (1.0 / 3.0) * e * e * e;
        dB = -1.0 + (4.0 / 3.0) * e - e * e + (8.0 / 15.0) * e * e * e;
    } else {
        // Written with 1/e so that huge |eta| (2e or e^2 overflowing) gives B -> 0 and dB -> 0, not NaN.
        double om = -std::expm1(-2.0 * e);
        double inv = 1.0 / e;
        B = 0.5 * om * inv;
        dB = (E - B) * inv;  // (2 e E - om) / (2 e^2)
    }
    // Direction cosines of eta; at eta = 0 (where S is not differentiable) take the symmetric choice 0.
    double c1 = e > 0.0 ? eta1 / e : 0.0, c2 = e > 0.0 ? eta2 / e : 0.0;
    S[0] = A + B * eta1;
    S[1] = B * eta2;
    S[2] = A - B * eta1;
    dS1[0] = dA * c1 + dB * c1 * eta1 + B;
    dS1[1] = dB * c1 * eta2;
    dS1[2] = dA * c1 - dB * c1 * eta1 - B;
    dS2[0] = dA * c2 + dB * c2 * eta1;
    dS2[1] = dB * c2 * eta2 + B;
    dS2[2] = dA * c2 - dB * c2 * eta1;
}

Scene::Scene(std::vector<Source> sources, int nBands, bool sky)
        : Scene(std::move(sources), nBands, sky ? SkyModel::Flat : SkyModel::None) {}

Scene::Scene(std::vector<Source> sources, int nBands, SkyModel sky, double skyX0, double skyY0)
        : _sources(std::move(sources)), _nBands(nBands), _skyModel(sky), _skyX0(skyX0), _skyY0(skyY0) {
    if (!std::isfinite(skyX0) || !std::isfinite(skyY0)) throw InputError("Scene: the sky origin must be finite");
    if (nBands < 1 || nBands > kMaxBands) {
        std::ostringstream os;
        os << "Scene: n_bands must be in [1, " << kMaxBands << "] (got " << nBands << ")";
        throw InputError(os.str());
    }
    if (_sources.empty()) throw InputError("Scene: need at least one source");
    for (int s = 0; s < nSources(); ++s) {
        auto const& src = _sources[s];
        if (src.components.empty()) throw InputError("Scene: a source needs at least one component");
        _offsets.push_back(nParams());
        _info.push_back({s, -1, -1, ParamKind::X});
        _info.push_back({s, -1, -1, ParamKind::Y});
        for (int c = 0; c < static_cast<int>(src.components.size()); ++c) {
            auto const& comp = src.components[c];
            if (comp.isPoint()) continue;
            _info.push_back({s, c, -1, ParamKind::LnReff});
            _info.push_back({s, c, -1, ParamKind::Eta1});
            _info.push_back({s, c, -1, ParamKind::Eta2});
            if (comp.hasN()) _info.push_back({s, c, -1, ParamKind::SersicN});
        }
        if (src.components.size() * static_cast<std::size_t>(nBands + 4) + _info.size() > kMaxParams) {
            throw InputError("Scene: more than 10,000,000 parameters");
        }
        for (int c = 0; c < static_cast<int>(src.components.size()); ++c) {
            for (int b = 0; b < nBands; ++b) _info.push_back({s, c, b, ParamKind::Flux});
        }
    }
    if (sky != SkyModel::None) {
        _skyOffset = nParams();
        for (int b = 0; b < nBands; ++b) _info.push_back({-1, -1, b, ParamKind::Sky});
    }
    if (sky == SkyModel::Plane) {
        for (int b = 0; b < nBands; ++b) _info.push_back({-1, -1, b, ParamKind::SkyGradX});
        for (int b = 0; b < nBands; ++b) _info.push_back({-1, -1, b, ParamKind::SkyGradY});
    }
}

int Scene::skyGradIndex(int b, int axis) const {
    if (!hasSkyPlane() || b < 0 || b >= _nBands || axis < 0 || axis > 1) {
        throw InputError("skyGradIndex: no sky gradient for this band and axis");
    }
    return _skyOffset + (1 + axis) * _nBands + b;
}

int Scene::skyIndex(int b) const {
    if (!hasSky() || b < 0 || b >= _nBands) throw InputError("skyIndex: no sky parameter for this band");
    return _skyOffset + b;
}

namespace {

void checkIndex(const char* what, int i, int n) {
    if (i < 0 || i >= n) {
        std::ostringstream os;
        os << what << " index " << i << " is out of range [0, " << n << ")";
        throw std::out_of_range(os.str());
    }
}

}  // namespace

int Scene::sourceOffset(int s) const {
    checkIndex("source", s, nSources());
    return _offsets[s];
}

int Scene::fluxIndex(int s, int c, int b) const {
    checkIndex("source", s, nSources());
    int nc = static_cast<int>(_sources[s].components.size());
    checkIndex("component", c, nc);
    checkIndex("band", b, _nBands);
    int end = s + 1 < nSources() ? _offsets[s + 1] : (hasSky() ? _skyOffset : nParams());
    return end - nc * _nBands + c * _nBands + b;
}

std::vector<std::string> Scene::paramNames() const {
    static const char* kinds[] = {"x", "y", "lnReff", "eta1", "eta2", "n", "flux", "sky", "skyGradX", "skyGradY"};
    std::vector<std::string> names;
    for (auto const& p : _info) {
        std::ostringstream os;
        if (isSkyKind(p.kind)) {
            os << kinds[static_cast<int>(p.kind)] << "[" << p.band << "]";
            names.push_back(os.str());
            continue;
        }
        os << "s" << p.source;
        if (p.component >= 0) os << ".c" << p.component;
        os << "." << kinds[static_cast<int>(p.kind)];
        if (p.band >= 0) os << "[" << p.band << "]";
        names.push_back(os.str());
    }
    return names;
}

void Scene::bandMixture(std::vector<double> const& params, int band, std::vector<Mixture> const& psfs,
                        std::vector<char> const& active, bool withDerivs, BandMixture& out) const {
    if (static_cast<int>(params.size()) != nParams()) {
        std::ostringstream os;
        os << "parameter vector has " << params.size() << " values, the scene has " << nParams();
        throw InputError(os.str());
    }
    if (band < 0 || band >= _nBands) {
        std::ostringstream os;
        os << "band index " << band << " is out of range [0, " << _nBands << ")";
        throw InputError(os.str());
    }
    if (psfs.size() != 1 && static_cast<int>(psfs.size()) != nSources()) {
        throw InputError("need one PSF mixture per source, or one shared by all sources");
    }
    for (double v : params) {
        if (!std::isfinite(v)) throw InputError("non-finite model parameter");
    }
    auto isActive = [&](int i) { return withDerivs && (active.empty() || active[i]); };
    out.mixture.clear();
    out.derivs.clear();
    ProfileValues pv;
    for (int s = 0; s < nSources(); ++s) {
        auto const& src = _sources[s];
        Mixture const& psf = psfs.size() == 1 ? psfs[0] : psfs[s];
        if (psf.empty()) throw InputError("empty PSF mixture");
        int o = _offsets[s];
        int ix = o, iy = o + 1;
        double cx = params[ix], cy = params[iy];
        int p = o + 2;
        for (int c = 0; c < static_cast<int>(src.components.size()); ++c) {
            auto const& comp = src.components[c];
            int iF = fluxIndex(s, c, band);
            double F = params[iF];
            if (comp.isPoint()) {
                for (auto const& pg : psf) {
                    int g = static_cast<int>(out.mixture.size());
                    out.mixture.push_back({F * pg.flux, cx + pg.x, cy + pg.y, pg.xx, pg.xy, pg.yy});
                    if (isActive(ix)) out.derivs.push_back({g, ix, {0, 1, 0, 0, 0, 0}});
                    if (isActive(iy)) out.derivs.push_back({g, iy, {0, 0, 1, 0, 0, 0}});
                    if (isActive(iF)) out.derivs.push_back({g, iF, {pg.flux, 0, 0, 0, 0, 0}});
                }
                continue;
            }
            int iR = p, iE1 = p + 1, iE2 = p + 2, iN = comp.hasN() ? p + 3 : -1;
            p += comp.nShapeParams();
            double r2 = std::exp(2.0 * params[iR]);
            double S[3], dS1[3], dS2[3];
            shapeMatrix(params[iE1], params[iE2], S, dS1, dS2);
            comp.profile->evaluate(iN >= 0 ? params[iN] : 1.0, pv);
            for (int k = 0; k < comp.profile->size(); ++k) {
                double sk2r2 = pv.s[k] * pv.s[k] * r2;
                double cov[3] = {sk2r2 * S[0], sk2r2 * S[1], sk2r2 * S[2]};
                double dcovdn = 2.0 * pv.s[k] * pv.ds[k] * r2;
                for (auto const& pg : psf) {
                    int g = static_cast<int>(out.mixture.size());
                    double wf = pv.w[k] * pg.flux;
                    out.mixture.push_back({F * wf, cx + pg.x, cy + pg.y, cov[0] + pg.xx, cov[1] + pg.xy,
                                           cov[2] + pg.yy});
                    if (isActive(ix)) out.derivs.push_back({g, ix, {0, 1, 0, 0, 0, 0}});
                    if (isActive(iy)) out.derivs.push_back({g, iy, {0, 0, 1, 0, 0, 0}});
                    if (isActive(iF)) out.derivs.push_back({g, iF, {wf, 0, 0, 0, 0, 0}});
                    if (isActive(iR)) {
                        out.derivs.push_back({g, iR, {0, 0, 0, 2.0 * cov[0], 2.0 * cov[1], 2.0 * cov[2]}});
                    }
                    if (isActive(iE1)) {
                        out.derivs.push_back({g, iE1, {0, 0, 0, sk2r2 * dS1[0], sk2r2 * dS1[1], sk2r2 * dS1[2]}});
                    }
                    if (isActive(iE2)) {
                        out.derivs.push_back({g, iE2, {0, 0, 0, sk2r2 * dS2[0], sk2r2 * dS2[1], sk2r2 * dS2[2]}});
                    }
                    if (iN >= 0 && isActive(iN)) {
                        out.derivs.push_back({g, iN, {F * pv.dw[k] * pg.flux, 0, 0, dcovdn * S[0], dcovdn * S[1],
                                                      dcovdn * S[2]}});
                    }
                }
            }
        }
    }
    if (hasSky()) {
        // A flat sky is one very wide round Gaussian (value = sky level to < 5e-7 over any stamp), so the
        // existing kernels give its chi2, normal-equation rows and cross terms with every other parameter
        // in the same pass. Centred on the first source: within the stamp by construction.
        int iS = skyIndex(band);
        double norm = 2.0 * M_PI * kSkyVariance;
        int g = static_cast<int>(out.mixture.size());
        out.mixture.push_back({params[iS] * norm, params[_offsets[0]], params[_offsets[0] + 1], kSkyVariance, 0.0,
                               kSkyVariance});
        if (isActive(iS)) out.derivs.push_back({g, iS, {norm, 0, 0, 0, 0, 0}});
    }
    if (hasSkyPlane()) {
        // Each gradient is a pair of the same wide Gaussians at +-kSkyGradOffset from the sky origin along
        // its axis with opposite amplitudes (kSkyGradOffset): their sum is linear in the coordinate, so the
        // kernels again give every term in the same pass, and the origin stays fixed (no dependence on
        // the sources' centres, whose derivatives would otherwise need the plane's terms).
        constexpr double V = kSkyVariance, D = kSkyGradOffset;
        double norm = M_PI * V * V / D * std::exp(0.5 * D * D / V);
        for (int axis = 0; axis < 2; ++axis) {
            int iG = skyGradIndex(band, axis);
            for (int sign = -1; sign <= 1; sign += 2) {
                int g = static_cast<int>(out.mixture.size());
                double a = sign * norm;
                out.mixture.push_back({params[iG] * a, _skyX0 + (axis == 0 ? sign * D : 0.0),
                                       _skyY0 + (axis == 1 ? sign * D : 0.0), V, 0.0, V});
                if (isActive(iG)) out.derivs.push_back({g, iG, {a, 0, 0, 0, 0, 0}});
            }
        }
    }
    // Sizes are exp(ln reff) and PSF covariances add: catch what overflows or degenerates before the
    // evaluation derives pixel ranges from the inverse covariances.
    for (std::size_t g = 0; g < out.mixture.size(); ++g) checkGaussian(out.mixture[g], "model Gaussian", g);
    for (auto const& d : out.derivs) {
        for (double v : d.d) {
            if (!std::isfinite(v)) throw InputError("non-finite derivative of a model Gaussian (extreme parameters)");
        }
    }
}

void checkInverseSigma(ImageRef const& ref) {
    // float32 values square to at most 1.2e77: only float64 can overflow.
    if (!ref.sigmaInv || ref.sigmaDtype != DType::F64) return;
    constexpr double maxSigmaInv = 1.3407807929942596e154;  // sqrt(DBL_MAX)
    auto const* base = static_cast<double const*>(ref.sigmaInv);
    for (std::ptrdiff_t y = 0; y < ref.ny; ++y) {
        double const* row = base + y * ref.sigmaRowStride;
        bool big = false;
        for (std::ptrdiff_t x = 0; x < ref.nx; ++x) big |= row[x] > maxSigmaInv && std::isfinite(row[x]);
        if (!big) continue;
        for (std::ptrdiff_t x = 0; x < ref.nx; ++x) {
            if (row[x] > maxSigmaInv && std::isfinite(row[x])) {
                std::ostringstream os;
                os << "inverse sigma at [" << y << ", " << x << "] is " << row[x]
                   << ": too large (the weight sigma_inv^2 overflows double precision, i.e. the variance "
                      "is below 1e-308); use 0 to mask a pixel";
                throw InputError(os.str());
            }
        }
    }
}

namespace {

ImageRef const& checkedInverseSigma(ImageRef const& ref) {
    checkInverseSigma(ref);
    return ref;
}

}  // namespace

BandData::BandData(ImageRef const& ref, std::vector<Mixture> psfs_)
        : image(checkedInverseSigma(ref)), psfs(std::move(psfs_)) {
    if (psfs.empty()) throw InputError("BandData: need at least one PSF mixture");
    for (auto const& m : psfs) {
        if (m.empty()) throw InputError("BandData: empty PSF mixture");
        for (auto const& g : m) {
            bool ok = std::isfinite(g.flux) && std::isfinite(g.x) && std::isfinite(g.y) && std::isfinite(g.xx) &&
                      std::isfinite(g.xy) && std::isfinite(g.yy) && g.xx >= 0.0 && g.yy >= 0.0 &&
                      g.xx * g.yy - g.xy * g.xy >= 0.0;
            if (!ok) throw InputError("BandData: PSF Gaussians need finite values and a non-negative covariance");
        }
    }
}

void sceneImage(Scene const& scene, std::vector<double> const& params, int band, std::vector<Mixture> const& psfs,
                OutImageRef const& out) {
    BandMixture bm;
    scene.bandMixture(params, band, psfs, {}, false, bm);
    renderImage(bm.mixture, out);
}

double sceneChi2(Scene const& scene, std::vector<double> const& params, std::vector<BandData> const& bands) {
    if (static_cast<int>(bands.size()) != scene.nBands()) throw InputError("need one BandData per band");
    double chi2 = 0.0;
    BandMixture bm;
    for (int b = 0; b < scene.nBands(); ++b) {
        scene.bandMixture(params, b, bands[b].psfs, {}, false, bm);
        chi2 += computeChi2(bm.mixture, bands[b].image);
    }
    return chi2;
}

NormalEquations sceneNormalEquations(Scene const& scene, std::vector<double> const& params,
                                     std::vector<BandData> const& bands, std::vector<char> const& active,
                                     std::vector<FluxImages>* fluxImages,
                                     std::vector<BandNormalEquations>* perBand) {
    if (static_cast<int>(bands.size()) != scene.nBands()) throw InputError("need one BandData per band");
    if (!active.empty() && static_cast<int>(active.size()) != scene.nParams()) {
        throw InputError("active mask must have one entry per parameter");
    }
    int P = scene.nParams();
    if (P > kMaxDenseParams) {
        std::ostringstream os;
        os << "the scene has " << P << " parameters; dense normal equations are limited to " << kMaxDenseParams;
        throw InputError(os.str());
    }
    NormalEquations total = makeNormalEquations(P);
    BandMixture bm;
    std::vector<int> local(P);
    std::vector<int> global;
    std::vector<int> recorded;  // local columns of a band's flux images
    if (fluxImages) fluxImages->resize(scene.nBands());  // the vectors keep their storage from pass to pass
    if (perBand) perBand->clear();
    for (int b = 0; b < scene.nBands(); ++b) {
        scene.bandMixture(params, b, bands[b].psfs, active, true, bm);
        // Only the columns this band touches enter its pass (other bands' fluxes are zero there).
        std::fill(local.begin(), local.end(), -1);
        global.clear();
        for (auto& d : bm.derivs) {
            if (local[d.column] < 0) {
                local[d.column] = static_cast<int>(global.size());
                global.push_back(d.column);
            }
            d.column = local[d.column];
        }
        int Pl = static_cast<int>(global.size());
        NormalEquations ne = makeNormalEquations(Pl);
        recorded.clear();
        double* pixels = nullptr;
        if (fluxImages) {
            FluxImages& fi = (*fluxImages)[b];
            fi.columns.clear();
            auto const& info = scene.paramInfo();
            for (int i = 0; i < P; ++i) {
                if (info[i].kind == ParamKind::Flux && local[i] >= 0) {
                    fi.columns.push_back(i);
                    recorded.push_back(local[i]);
                }
            }
            fi.ny = bands[b].image.ref().ny;
            fi.nx = bands[b].image.ref().nx;
            fi.pixels.assign(fi.columns.size() * fi.ny * fi.nx, 0.0);
            pixels = fi.pixels.data();
        }
        accumulateNormalEquations(bm.mixture, bm.derivs, bands[b].image, ne, recorded, pixels);
        total.chi2 += ne.chi2;
        for (int i = 0; i < Pl; ++i) {
            total.b[global[i]] += ne.b[i];
            for (int j = 0; j < Pl; ++j) total.H[global[i] * P + global[j]] += ne.H[i * Pl + j];
        }
        if (perBand) perBand->push_back({global, std::move(ne)});
    }
    return total;
}

}  // namespace galmix
}  // namespace lsst
