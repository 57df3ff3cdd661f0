// Parameter map: source models (components of radial profiles + ellipse + per-band fluxes) -> Gaussians.
#ifndef LSST_GALMIX_MODEL_H
#define LSST_GALMIX_MODEL_H

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "lsst/galmix/evaluate.h"
#include "lsst/galmix/mixture.h"
#include "lsst/galmix/profile.h"

namespace lsst {
namespace galmix {

/// One component of a source: a radial profile, or a point source (profile == nullptr).
struct Component {
    std::shared_ptr<const Profile> profile;
    std::string name;
    bool isPoint() const { return !profile; }
    bool hasN() const { return profile && profile->dependsOnN(); }
    /// Nonlinear parameters of the component: (ln reff, eta1, eta2[, n]) or none for a point.
    int nShapeParams() const { return isPoint() ? 0 : (hasN() ? 4 : 3); }
};

/// A source: components sharing one centroid.
struct Source {
    std::vector<Component> components;
};

/// Limits that keep a malformed scene from exhausting memory: bands per scene, and parameters of the dense
/// normal equations (P x P doubles: 3.2 GB at the limit).
constexpr int kMaxBands = 1000;
constexpr int kMaxDenseParams = 20000;

/// Kind of each parameter.
enum class ParamKind {
    X = 0, Y = 1, LnReff = 2, Eta1 = 3, Eta2 = 4, SersicN = 5, Flux = 6, Sky = 7, SkyGradX = 8, SkyGradY = 9
};

/// Sky parameters are linear and may take either sign (the optimizer treats them alike).
inline bool isSkyKind(ParamKind k) {
    return k == ParamKind::Sky || k == ParamKind::SkyGradX || k == ParamKind::SkyGradY;
}

/// Local sky model of a scene: none, one flat level per band, or a plane per band
/// (level at the sky origin + gradients along x and y, per pixel).
enum class SkyModel { None = 0, Flat = 1, Plane = 2 };

struct ParamInfo {
    int source, component, band;  // component/band -1 where not applicable
    ParamKind kind;
};

/// A PSF-convolved Gaussian mixture of one band with the derivatives of its Gaussians.
struct BandMixture {
    Mixture mixture;
    std::vector<GaussianDeriv> derivs;  // columns are global parameter indices
};

/// A list of sources with concatenated parameters. Per source the layout is
///   [x, y, then per extended component: ln reff, eta1, eta2, (n if the profile depends on n),
///    then fluxes: component-major, band-minor (F_c0b0, F_c0b1, ..., F_c1b0, ...)].
/// PSFs are given per band and per source (psfs[s], or a single entry shared by all sources); PSF
/// Gaussian centres are offsets from the source centroid.
/// With `sky`, one flat-sky level per band follows all sources (ParamKind::Sky, linear like the fluxes).
/// With SkyModel::Plane the sky of band b is sky[b] + gradX[b] (x - xs) + gradY[b] (y - ys) about the sky
/// origin (xs, ys); the gradients follow the levels ([levels of all bands][gradX ...][gradY ...]).
class Scene {
public:
    Scene(std::vector<Source> sources, int nBands, bool sky = false);
    Scene(std::vector<Source> sources, int nBands, SkyModel sky, double skyX0 = 0.0, double skyY0 = 0.0);

    int nParams() const { return static_cast<int>(_info.size()); }
    int nBands() const { return _nBands; }
    int nSources() const { return static_cast<int>(_sources.size()); }
    std::vector<Source> const& sources() const { return _sources; }
    std::vector<ParamInfo> const& paramInfo() const { return _info; }
    std::vector<std::string> paramNames() const;
    /// Index of source s's x parameter; std::out_of_range unless 0 <= s < nSources().
    int sourceOffset(int s) const;
    /// Index of the flux of component c of source s in band b; std::out_of_range for any bad index.
    int fluxIndex(int s, int c, int b) const;
    bool hasSky() const { return _skyOffset >= 0; }
    /// Index of band b's sky level (requires hasSky()).
    int skyIndex(int b) const;
    SkyModel skyModel() const { return _skyModel; }
    bool hasSkyPlane() const { return _skyModel == SkyModel::Plane; }
    /// Index of band b's sky gradient along x (axis 0) or y (axis 1) (requires hasSkyPlane()).
    int skyGradIndex(int b, int axis) const;
    /// The point about which the sky plane is expanded (its level parameter is the sky there).
    double skyX0() const { return _skyX0; }
    double skyY0() const { return _skyY0; }

    /// Gaussians of one band and (if wanted) their derivatives with respect to the parameters
    /// flagged in `active` (size nParams, or empty for all).
    void bandMixture(std::vector<double> const& params, int band, std::vector<Mixture> const& psfs,
                     std::vector<char> const& active, bool withDerivs, BandMixture& out) const;

private:
    std::vector<Source> _sources;
    int _nBands;
    std::vector<int> _offsets;
    std::vector<ParamInfo> _info;
    int _skyOffset = -1;
    SkyModel _skyModel = SkyModel::None;
    double _skyX0 = 0.0, _skyY0 = 0.0;
};

/// Throws InputError naming the first pixel whose inverse sigma is so large that its square (the weight)
/// overflows double precision (the variance is below ~1e-308); the image checks themselves only say
/// "not finite" there.
void checkInverseSigma(ImageRef const& ref);

/// Variance (pixel^2, both axes) of the Gaussian that carries a flat sky through the Gaussian kernels:
/// over any stamp (|r| < 1e4 px) it is 1 to better than 5e-7 of itself, far below the noise of any sky.
inline constexpr double kSkyVariance = 1e14;

/// Offset (pixels) of the two wide Gaussians of opposite sign that carry each sky gradient: their
/// difference is 2 sinh(u D / V) exp(-(r^2 + D^2) / 2V), linear in u = x - xs to (u D / V)^2 / 6 < 2e-9
/// and flat in r to 5e-7 over any stamp (|r| < 1e4 px), with exp(-D^2 / 2V) folded into the amplitude.
/// The difference is 2e-8 u of each term, far above the few-ulp rounding of the kernels' exponentials.
inline constexpr double kSkyGradOffset = 1e6;

/// One band's data: a checked image and the PSF mixture of each source (one entry = all sources).
struct BandData {
    BandData(ImageRef const& ref, std::vector<Mixture> psfs);
    PreparedImage image;
    std::vector<Mixture> psfs;
};

/// Model image of one band into `out`.
void sceneImage(Scene const& scene, std::vector<double> const& params, int band,
                std::vector<Mixture> const& psfs, OutImageRef const& out);

/// chi2 summed over bands.
double sceneChi2(Scene const& scene, std::vector<double> const& params, std::vector<BandData> const& bands);

/// Of one band: the model of each of its source fluxes at unit flux (d model / d flux) over its image, at
/// the weighted pixels (0 elsewhere). Any model of the band's sources at these nonlinear parameters is
/// sum_j flux[columns[j]] pixels[j], whatever the fluxes.
struct FluxImages {
    // Parameter indices (ParamKind::Flux), ascending: the active fluxes with a derivative in this band
    // (an active flux not listed has no light in this band; inactive fluxes are not recorded).
    std::vector<int> columns;
    std::ptrdiff_t ny = 0, nx = 0;
    std::vector<double> pixels;  // columns.size() x ny x nx
};

/// One band's share of sceneNormalEquations: its chi2, H and b over the parameters `global` (the columns its
/// pass touched; local index i is parameter global[i]).
struct BandNormalEquations {
    std::vector<int> global;
    NormalEquations ne;
};

/// One-pass chi2 and normal equations (nParams x nParams, global layout) summed over bands; inactive
/// parameters have zero rows and columns. With `fluxImages`, the same pass fills one FluxImages per band;
/// with `perBand`, it also keeps each band's share.
NormalEquations sceneNormalEquations(Scene const& scene, std::vector<double> const& params,
                                     std::vector<BandData> const& bands, std::vector<char> const& active,
                                     std::vector<FluxImages>* fluxImages = nullptr,
                                     std::vector<BandNormalEquations>* perBand = nullptr);

/// Shape matrix S(eta) = R(theta) diag(1, q^2) R(theta)^T (xx, xy, yy) and its derivatives
/// d/deta1, d/deta2 (each xx, xy, yy).
void shapeMatrix(double eta1, double eta2, double S[3], double dS1[3], double dS2[3]);

}  // namespace galmix
}  // namespace lsst

#endif
