// pybind11 bindings of the parameter map (profiles, components, sources, scenes) and the optimizers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>

#include "bindings_common.h"
#include "lsst/galmix/model.h"
#include "lsst/galmix/optimize.h"
#include "lsst/galmix/profile.h"

namespace lsst {
namespace galmix {
namespace bind {

namespace {

using DArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// One band's arrays (kept alive here) and the engine's view of them.
struct PyBand {
    py::array image;
    py::object sigmaInv;
    BandInput input;
};

std::vector<Mixture> psfList(py::object const& psf) {
    if (psf.is_none()) throw py::type_error("psf is None; expected an (N, 6) array or a list of them");
    std::vector<Mixture> out;
    if (py::isinstance<py::list>(psf) || py::isinstance<py::tuple>(psf)) {
        for (auto item : psf) out.push_back(mixtureFromArray(py::cast<DArray>(item)));
    } else {
        out.push_back(mixtureFromArray(py::cast<DArray>(psf)));
    }
    if (out.empty()) throw InputError("need at least one PSF mixture");
    return out;
}

std::shared_ptr<PyBand> makeBand(py::array image, std::optional<py::array> sigmaInv, py::object psf, double x0,
                                 double y0) {
    auto b = std::make_shared<PyBand>();
    image = nativeFloat(image);
    sigmaInv = nativeFloat(sigmaInv);
    b->image = image;
    b->sigmaInv = sigmaInv ? py::object(*sigmaInv) : py::object(py::none());
    b->input.ref = imageRef(image, sigmaInv, x0, y0);
    b->input.psfs = psfList(psf);
    return b;
}

// pybind11 converts None to a null holder inside lists: refuse it before anything dereferences it.
void requireBands(std::vector<std::shared_ptr<PyBand>> const& bands) {
    for (std::size_t i = 0; i < bands.size(); ++i) {
        if (!bands[i]) throw py::type_error("bands[" + std::to_string(i) + "] is None; expected a Band");
    }
}

void checkBandIndex(Scene const& s, int band) {
    if (band < 0 || band >= s.nBands()) {
        throw py::index_error("band index " + std::to_string(band) + " is out of range [0, " +
                              std::to_string(s.nBands()) + ")");
    }
}

std::vector<BandData> prepare(std::vector<std::shared_ptr<PyBand>> const& bands) {
    requireBands(bands);
    std::vector<BandData> out;
    out.reserve(bands.size());
    for (auto const& b : bands) out.emplace_back(b->input.ref, b->input.psfs);
    return out;
}

std::vector<double> toVector(DArray const& a_, const char* what = "parameters") {
    auto a = aligned(a_);
    if (a.ndim() != 1) throw InputError(std::string(what) + " must be a 1-d array");
    return std::vector<double>(a.data(), a.data() + a.size());
}

// One band's PSF-convolved mixture at `params` (with its sparse parameter derivatives when `withDerivs`),
// as the engine builds it: the bindings that expose it for tests read it through here.
BandMixture bandMixtureAt(Scene const& s, DArray const& params, int band, py::object const& psf, bool withDerivs) {
    checkBandIndex(s, band);
    BandMixture bm;
    s.bandMixture(toVector(params), band, psfList(psf), {}, withDerivs, bm);
    return bm;
}

std::vector<char> toMask(std::optional<py::array_t<bool, py::array::c_style | py::array::forcecast>> const& m) {
    std::vector<char> out;
    if (m) {
        if (m->ndim() != 1) throw InputError("a parameter mask must be a 1-d array");
        out.resize(m->size());
        for (py::ssize_t i = 0; i < m->size(); ++i) out[i] = m->data()[i] ? 1 : 0;
    }
    return out;
}

py::tuple neTuple(NormalEquations const& ne) {
    std::vector<double> grad(ne.b.size());
    for (std::size_t i = 0; i < grad.size(); ++i) grad[i] = -2.0 * ne.b[i];
    return py::make_tuple(ne.chi2, vectorToArray(grad), matrixToArray(ne.H, ne.nParams), vectorToArray(ne.b));
}

const char* const kOverflow =
        "chi2 or its derivatives overflow double precision (data, weights or model fluxes too large)";

// Assign one FitOptions field if it passes validateOptions (which names the field and its range); the
// cross-field condition n_min < n_max is left for fit time so that the two can be changed in any order.
template <typename T>
void setChecked(FitOptions& o, T FitOptions::*field, T value) {
    FitOptions trial = o;
    trial.*field = std::move(value);
    validateOptions(trial, false);
    o = std::move(trial);
}

// A FitOptions field as a Python property whose setter validates (setChecked).
template <typename T>
void defCheckedScalar(py::class_<FitOptions>& cls, const char* name, T FitOptions::*field, const char* doc) {
    cls.def_property(
            name, [field](FitOptions const& o) { return o.*field; },
            [field](FitOptions& o, T v) { setChecked(o, field, v); }, doc);
}

// The same for a per-parameter vector field, exchanged with Python as a 1-d float64 array.
void defCheckedVector(py::class_<FitOptions>& cls, const char* name, std::vector<double> FitOptions::*field,
                      const char* doc) {
    cls.def_property(
            name, [field](FitOptions const& o) { return vectorToArray(o.*field); },
            [field, name](FitOptions& o, DArray a) { setChecked(o, field, toVector(a, name)); }, doc);
}

struct PyProblem {
    std::shared_ptr<const Scene> scene;
    std::vector<std::shared_ptr<PyBand>> bands;
    std::vector<double> params0;
    std::vector<char> free;
    FitOptions options;
};

const char* statusName(FitStatus s) {
    switch (s) {
        case FitStatus::Converged: return "converged";
        case FitStatus::MaxIter: return "max_iter";
        case FitStatus::Singular: return "singular";
        case FitStatus::NonFinite: return "non_finite";
        default: return "error";
    }
}

}  // namespace

void bindModel(py::module_& m) {
    py::class_<Profile, std::shared_ptr<Profile>>(m, "Profile",
                                                  "Radial profile: K concentric Gaussians (weights w_k, sizes s_k "
                                                  "in units of reff).")
            .def_property_readonly("size", &Profile::size, "Number of Gaussians K.")
            .def_property_readonly("depends_on_n", &Profile::dependsOnN,
                                   "True if weights/sizes depend on a Sersic index (the component gets an n "
                                   "parameter).")
            .def(
                    "evaluate",
                    [](Profile const& p, double n) {
                        ProfileValues v;
                        p.evaluate(n, v);
                        return py::make_tuple(vectorToArray(v.w), vectorToArray(v.s), vectorToArray(v.dw),
                                              vectorToArray(v.ds));
                    },
                    py::arg("n") = 1.0, "(w, s, dw/dn, ds/dn) at Sersic index n, each (K,).");
    py::class_<FixedProfile, Profile, std::shared_ptr<FixedProfile>>(m, "FixedProfile",
                                                                     "Fixed weights (normalised to sum 1) and sizes.")
            .def(py::init([](DArray w, DArray s) { return std::make_shared<FixedProfile>(toVector(w), toVector(s)); }),
                 py::arg("weights"), py::arg("sizes"));
    py::class_<SplineProfile, Profile, std::shared_ptr<SplineProfile>>(
            m, "SplineProfile",
            "Weights and sizes as piecewise cubics in x = ln(n), scipy PPoly layout: breakpoints (M,), coefficients\n"
            "(4, M-1, 2K) with c[0] the highest order in (x - x_i); values [w_1..w_K, ln s_1..ln s_K]. Weights are\n"
            "normalised to sum 1; end polynomials extrapolate.")
            .def(py::init([](DArray x, DArray c) {
                     c = aligned(c);
                     if (c.ndim() != 3 || c.shape(0) != 4 || c.shape(1) != x.size() - 1) {
                         throw InputError("SplineProfile: coefficients must have shape (4, M-1, 2K)");
                     }
                     return std::make_shared<SplineProfile>(toVector(x),
                                                            std::vector<double>(c.data(), c.data() + c.size()),
                                                            static_cast<int>(c.shape(2)));
                 }),
                 py::arg("breakpoints"), py::arg("coefficients"));

    py::class_<Component>(m, "Component", "A source component: a radial profile, or a point source (profile=None).")
            .def(py::init([](std::shared_ptr<Profile> p, std::string name) {
                     return Component{std::shared_ptr<const Profile>(p), std::move(name)};
                 }),
                 py::arg("profile") = nullptr, py::arg("name") = "")
            .def_property_readonly("is_point", &Component::isPoint)
            .def_property_readonly("has_n", &Component::hasN)
            .def_property_readonly("n_shape_params", &Component::nShapeParams)
            .def_readonly("name", &Component::name);
    py::class_<Source>(m, "Source", "Components sharing one centroid.")
            .def(py::init([](std::vector<Component> c) { return Source{std::move(c)}; }), py::arg("components"))
            .def_readonly("components", &Source::components);

    py::enum_<ParamKind>(m, "ParamKind", "Kind of a scene parameter (see Scene.param_kinds).")
            .value("X", ParamKind::X)
            .value("Y", ParamKind::Y)
            .value("LN_REFF", ParamKind::LnReff)
            .value("ETA1", ParamKind::Eta1)
            .value("ETA2", ParamKind::Eta2)
            .value("SERSIC_N", ParamKind::SersicN)
            .value("FLUX", ParamKind::Flux)
            .value("SKY", ParamKind::Sky)
            .value("SKY_GRAD_X", ParamKind::SkyGradX)
            .value("SKY_GRAD_Y", ParamKind::SkyGradY);

    py::class_<PyBand, std::shared_ptr<PyBand>>(
            m, "Band",
            "One band's data: image [y, x] (float32/64), optional inverse sigma (same shape; weight = sigma_inv^2,\n"
            "0 masks a pixel), PSF mixture(s) as (N, 6) arrays (flux, dx, dy, xx, xy, yy; centres relative to\n"
            "the source) -- one array shared by all sources or a list with one per source -- and the pixel\n"
            "coordinate (x0, y0) of element [0, 0]. Arrays are referenced, not copied; values are checked when\n"
            "used.")
            .def(py::init(&makeBand), py::arg("image"), py::arg("sigma_inv") = py::none(), py::arg("psf"),
                 py::arg("x0") = 0.0, py::arg("y0") = 0.0)
            .def_readonly("image", &PyBand::image)
            .def_readonly("sigma_inv", &PyBand::sigmaInv)
            .def_property_readonly("x0", [](PyBand const& b) { return b.input.ref.x0; })
            .def_property_readonly("y0", [](PyBand const& b) { return b.input.ref.y0; });

    py::class_<Scene, std::shared_ptr<Scene>>(
            m, "Scene",
            "Sources with concatenated parameters. Per source: [x, y, then per extended component ln_reff, eta1,\n"
            "eta2 (+ n if its profile depends on n), then fluxes component-major, band-minor].")
            .def(py::init([](std::vector<Source> sources, int nBands, bool sky, bool skyPlane,
                             std::pair<double, double> origin) {
                     return std::make_shared<Scene>(std::move(sources), nBands,
                                                    skyPlane ? SkyModel::Plane : (sky ? SkyModel::Flat : SkyModel::None),
                                                    origin.first, origin.second);
                 }),
                 py::arg("sources"), py::arg("n_bands") = 1, py::arg("sky") = false, py::arg("sky_plane") = false,
                 py::arg("sky_origin") = std::make_pair(0.0, 0.0),
                 "With sky=True one flat-sky level per band (linear, either sign) follows all sources; with\n"
                 "sky_plane=True a plane per band, level + gradients along x and y about sky_origin (x, y).")
            .def_property_readonly("has_sky", &Scene::hasSky)
            .def_property_readonly("has_sky_plane", &Scene::hasSkyPlane)
            .def_property_readonly("sky_origin", [](Scene const& s) { return std::make_pair(s.skyX0(), s.skyY0()); })
            .def("sky_index", &Scene::skyIndex, py::arg("band"), "Index of the band's sky level.")
            .def("sky_grad_index", &Scene::skyGradIndex, py::arg("band"), py::arg("axis"),
                 "Index of the band's sky gradient along x (axis 0) or y (axis 1).")
            .def_property_readonly("n_params", &Scene::nParams)
            .def_property_readonly("n_bands", &Scene::nBands)
            .def_property_readonly("n_sources", &Scene::nSources)
            .def_property_readonly("sources", &Scene::sources)
            .def("param_names", &Scene::paramNames, "Names like 's0.x', 's0.c1.lnReff', 's0.c0.flux[2]'.")
            .def(
                    "param_kinds",
                    [](Scene const& s) {
                        std::vector<int> k;
                        for (auto const& p : s.paramInfo()) k.push_back(static_cast<int>(p.kind));
                        return k;
                    },
                    "ParamKind value of each parameter (ints).")
            .def(
                    "param_index",
                    [](Scene const& s) {
                        py::array_t<int> out({static_cast<py::ssize_t>(s.nParams()), py::ssize_t(3)});
                        auto r = out.mutable_unchecked<2>();
                        for (int i = 0; i < s.nParams(); ++i) {
                            auto const& p = s.paramInfo()[i];
                            r(i, 0) = p.source;
                            r(i, 1) = p.component;
                            r(i, 2) = p.band;
                        }
                        return out;
                    },
                    "(P, 3) int array: source, component (-1 for x, y), band (-1 unless flux) of each parameter.")
            .def("source_offset", &Scene::sourceOffset, py::arg("source"), "Index of the source's x parameter.")
            .def("flux_index", &Scene::fluxIndex, py::arg("source"), py::arg("component"), py::arg("band"))
            .def(
                    "gaussians",
                    [](Scene const& s, DArray params, int band, py::object psf) {
                        return mixtureToArray(bandMixtureAt(s, params, band, psf, false).mixture);
                    },
                    py::arg("params"), py::arg("band"), py::arg("psf"),
                    "The PSF-convolved (G, 6) mixture of one band (source, component, profile Gaussian, PSF "
                    "Gaussian order).")
            .def(
                    "gaussian_derivatives",
                    [](Scene const& s, DArray params, int band, py::object psf) {
                        BandMixture bm = bandMixtureAt(s, params, band, psf, true);
                        py::array_t<double> out({static_cast<py::ssize_t>(bm.mixture.size()), py::ssize_t(6),
                                                 static_cast<py::ssize_t>(s.nParams())});
                        std::fill(out.mutable_data(), out.mutable_data() + out.size(), 0.0);
                        auto r = out.mutable_unchecked<3>();
                        for (auto const& d : bm.derivs) {
                            for (int k = 0; k < 6; ++k) r(d.gaussian, k, d.column) += d.d[k];
                        }
                        return out;
                    },
                    py::arg("params"), py::arg("band"), py::arg("psf"),
                    "Dense (G, 6, P) d(gaussians)/d(params) (for tests; the engine uses the sparse form).")
            .def(
                    "image",
                    [](Scene const& s, DArray params, int band, py::object psf, py::array out, double x0, double y0) {
                        checkBandIndex(s, band);
                        OutImageRef ref = outImageRef(out, x0, y0);
                        auto p = toVector(params);
                        auto psfs = psfList(psf);
                        {
                            py::gil_scoped_release release;
                            sceneImage(s, p, band, psfs, ref);
                        }
                        checkFiniteOutput(out);
                        return out;
                    },
                    py::arg("params"), py::arg("band"), py::arg("psf"), py::arg("out"), py::arg("x0") = 0.0,
                    py::arg("y0") = 0.0, "Overwrite `out` with the model image of one band; returns `out`.")
            .def(
                    "chi2",
                    [](Scene const& s, DArray params, std::vector<std::shared_ptr<PyBand>> const& bands) {
                        auto p = toVector(params);
                        requireBands(bands);
                        double chi2;
                        {
                            py::gil_scoped_release release;
                            chi2 = sceneChi2(s, p, prepare(bands));
                        }
                        if (!std::isfinite(chi2)) throw InputError(kOverflow);
                        return chi2;
                    },
                    py::arg("params"), py::arg("bands"), "chi2 summed over bands (list of Band, one per band).")
            .def(
                    "normal_equations",
                    [](Scene const& s, DArray params, std::vector<std::shared_ptr<PyBand>> const& bands,
                       std::optional<py::array_t<bool, py::array::c_style | py::array::forcecast>> active) {
                        auto p = toVector(params);
                        auto mask = toMask(active);
                        requireBands(bands);
                        NormalEquations ne;
                        {
                            py::gil_scoped_release release;
                            ne = sceneNormalEquations(s, p, prepare(bands), mask);
                        }
                        auto finite = [](double v) { return std::isfinite(v); };
                        if (!std::isfinite(ne.chi2) || !std::all_of(ne.H.begin(), ne.H.end(), finite) ||
                            !std::all_of(ne.b.begin(), ne.b.end(), finite)) {
                            throw InputError(kOverflow);
                        }
                        return neTuple(ne);
                    },
                    py::arg("params"), py::arg("bands"), py::arg("active") = py::none(),
                    "(chi2, grad (P,), H = J^T W J (P, P), b = J^T W r (P,)) over all bands in one pass per band;\n"
                    "parameters with active[i] False get zero rows/columns.");
}

void bindOptimize(py::module_& m) {
    py::enum_<FitStatus>(m, "FitStatus", "Outcome of a fit: CONVERGED, MAX_ITER, SINGULAR, NON_FINITE, ERROR (bad input).")
            .value("CONVERGED", FitStatus::Converged)
            .value("MAX_ITER", FitStatus::MaxIter)
            .value("SINGULAR", FitStatus::Singular)
            .value("NON_FINITE", FitStatus::NonFinite)
            .value("ERROR", FitStatus::Error);

    py::class_<FitOptions> options(m, "FitOptions",
                                   "Options of the Levenberg-Marquardt fitter; each field is checked on "
                                   "assignment\n(ValueError naming the field and its allowed range).");
    options.def(py::init<>());
    defCheckedScalar(options, "max_iter", &FitOptions::maxIter,
                     "Iterations (outer Levenberg-Marquardt steps), in [0, 1000000].");
    defCheckedScalar(options, "max_eval", &FitOptions::maxEval,
                     "Passes over the pixels (trial points, including rejected ones), in [1, 10000000]; the fit\n"
                     "ends with status MAX_ITER when they are used up.");
    defCheckedScalar(options, "ftol", &FitOptions::ftol,
                     "Converged when the relative objective decrease < ftol (finite, >= 0).");
    defCheckedScalar(options, "xtol", &FitOptions::xtol,
                     "... or when every step < xtol * its parameter error (finite, >= 0).");
    defCheckedScalar(options, "lambda0", &FitOptions::lambda0,
                     "Initial Marquardt damping relative to diag(H), in [1e-10, 1e10].");
    defCheckedScalar(options, "n_min", &FitOptions::nMin,
                     "Lower bound of Sersic indices (finite, > 0; n_min < n_max is checked when fitting).");
    defCheckedScalar(options, "n_max", &FitOptions::nMax, "Upper bound of Sersic indices (finite, > 0).");
    options.def_property(
            "nonnegative_fluxes", [](FitOptions const& o) { return o.nonNegativeFluxes; },
            [](FitOptions& o, py::object v) {
                if (!py::isinstance<py::bool_>(v) &&
                    !py::isinstance(v, py::module_::import("numpy").attr("bool_"))) {
                    throw py::type_error("FitOptions.nonnegative_fluxes must be a bool");
                }
                o.nonNegativeFluxes = v.cast<bool>();
            },
            "Keep fluxes >= 0 during the iterations (bool).");
    defCheckedVector(options, "prior_mean", &FitOptions::priorMean,
                     "(P,) prior means (natural units: ln reff, eta1, eta2, n; finite); ignored for fluxes.");
    defCheckedVector(options, "prior_sigma", &FitOptions::priorSigma,
                     "(P,) prior sigmas (not NaN); <= 0 or inf = no prior on that parameter.");
    defCheckedVector(options, "lower", &FitOptions::lower,
                     "(P,) lower bounds (natural units, not NaN); with `upper`, finite pairs are enforced by\n"
                     "projecting trial points onto [lower, upper] and override [n_min, n_max]; -inf/inf =\n"
                     "unbounded; ignored for fluxes.");
    defCheckedVector(options, "upper", &FitOptions::upper, "(P,) upper bounds (not NaN); see `lower`.");
    options.def_readwrite("flux_images", &FitOptions::fluxImages,
                          "Return FitResult.flux_images (bool): the unit-flux models of the last pass.");
    options.def_readwrite("start_fluxes", &FitOptions::startFluxes,
                          "The free fluxes of params0 are a starting point (bool; a previous fit's): the\n"
                          "first pass linearises at them instead of a pass that solves the fluxes first.\n"
                          "Ignored when no source flux of params0 is positive, and where every source has\n"
                          "one component (the first pass, at unit fluxes, solves them anyway).");

    py::class_<FitResult>(m, "FitResult",
                          "Result of fit/fit_batch: params (P,), chi2, objective, n_iter, n_pix, status, message,\n"
                          "fisher (P, P), prior_precision (P,) and seconds.")
            .def_property_readonly("params", [](FitResult const& r) { return vectorToArray(r.params); })
            .def_readonly("chi2", &FitResult::chi2)
            .def_readonly("objective", &FitResult::objective, "chi2 + prior terms.")
            .def_readonly("n_iter", &FitResult::nIter)
            .def_readonly("n_eval", &FitResult::nEval, "Passes over the pixels (trial points) the fit took.")
            .def_readonly("n_pix", &FitResult::nPix)
            .def_readonly("status", &FitResult::status)
            .def_property_readonly("status_name", [](FitResult const& r) { return statusName(r.status); })
            .def_readonly("message", &FitResult::message)
            .def_property_readonly("fisher",
                                   [](FitResult const& r) {
                                       // The scene's P x P (params may hold a wrong-length params0 on error).
                                       auto n = static_cast<py::ssize_t>(std::llround(std::sqrt(r.fisher.size())));
                                       return matrixToArray(r.fisher, n);
                                   },
                                   "J^T W J (P, P) at the best fit, all parameters, natural units, data only.")
            .def_property_readonly("prior_precision",
                                   [](FitResult const& r) { return vectorToArray(r.priorPrecision); })
            .def_readonly("seconds", &FitResult::seconds,
                          "Wall-clock seconds of this fit in C++ (per problem, also inside fit_batch).")
            .def_property_readonly(
                    "flux_images",
                    [](FitResult const& r) {
                        py::list out;
                        for (auto const& fi : r.fluxImages) {
                            auto n = static_cast<py::ssize_t>(fi.columns.size());
                            py::array_t<double> pixels({n, static_cast<py::ssize_t>(fi.ny),
                                                        static_cast<py::ssize_t>(fi.nx)});
                            std::copy(fi.pixels.begin(), fi.pixels.end(), pixels.mutable_data());
                            py::array_t<int> columns(n);
                            std::copy(fi.columns.begin(), fi.columns.end(), columns.mutable_data());
                            out.append(py::make_tuple(columns, pixels));
                        }
                        return out;
                    },
                    "With options.flux_images: per band, (columns (J,), images (J, ny, nx)): the model of\n"
                    "flux parameter columns[j] at unit flux at the weighted pixels (0 elsewhere), at the\n"
                    "returned nonlinear parameters; the fitted model of a band is sum_j params[columns[j]]\n"
                    "images[j]. Empty for a failed fit.");

    py::class_<PyProblem>(m, "FitProblem", "One independent fit for fit_batch.")
            .def(py::init([](std::shared_ptr<Scene> scene, std::vector<std::shared_ptr<PyBand>> bands, DArray params0,
                             std::optional<py::array_t<bool, py::array::c_style | py::array::forcecast>> free,
                             std::optional<FitOptions> options) {
                     requireBands(bands);
                     return PyProblem{scene, std::move(bands), toVector(params0), toMask(free),
                                      options ? *options : FitOptions()};
                 }),
                 py::arg("scene").none(false), py::arg("bands"), py::arg("params0"), py::arg("free") = py::none(),
                 py::arg("options") = py::none())
            .def_property_readonly("scene", [](PyProblem const& p) { return std::const_pointer_cast<Scene>(p.scene); })
            .def_readonly("bands", &PyProblem::bands)
            .def_property_readonly("params0", [](PyProblem const& p) { return vectorToArray(p.params0); });

    m.def(
            "fit",
            [](std::shared_ptr<Scene> scene, std::vector<std::shared_ptr<PyBand>> const& bands, DArray params0,
               std::optional<py::array_t<bool, py::array::c_style | py::array::forcecast>> free,
               std::optional<FitOptions> options) {
                requireBands(bands);
                std::vector<BandInput> in;
                for (auto const& b : bands) in.push_back(b->input);
                auto p = toVector(params0);
                auto mask = toMask(free);
                FitOptions opt = options ? *options : FitOptions();
                SignalPoll poll;
                FitResult res;
                {
                    py::gil_scoped_release release;
                    res = fitScene(*scene, in, p, mask, opt, std::ref(poll));
                }
                poll.rethrow();
                return res;
            },
            py::arg("scene").none(false), py::arg("bands"), py::arg("params0"), py::arg("free") = py::none(),
            py::arg("options") = py::none(),
            "Levenberg-Marquardt fit of the free nonlinear parameters with the free fluxes solved exactly\n"
            "(non-negative least squares) at every step. `free` (P,) bool, default all. Never raises for bad\n"
            "data: see FitResult.status / message.");

    m.def(
            "fit_batch",
            [](std::vector<PyProblem> const& problems, int nThreads) {
                std::vector<FitProblem> in;
                in.reserve(problems.size());
                for (auto const& p : problems) {
                    FitProblem fp;
                    fp.scene = p.scene;
                    for (auto const& b : p.bands) fp.bands.push_back(b->input);
                    fp.params0 = p.params0;
                    fp.free = p.free;
                    fp.options = p.options;
                    in.push_back(std::move(fp));
                }
                SignalPoll poll;
                std::vector<FitResult> res;
                {
                    py::gil_scoped_release release;
                    res = fitBatch(in, nThreads, std::ref(poll));
                }
                poll.rethrow();
                return res;
            },
            py::arg("problems"), py::arg("n_threads") = 1,
            "Fit independent problems in one C++ loop on n_threads threads (<= 0: all cores); per-problem status.");

    py::class_<PsfFitResult>(m, "PsfFitResult",
                             "Result of fit_psf: gaussians (N, 6), flux, chi2, n_iter, status, message.")
            .def_property_readonly("gaussians", [](PsfFitResult const& r) { return mixtureToArray(r.gaussians); },
                                   "(N, 6): fraction (sum 1), x, y (pixel frame of the image), xx, xy, yy.")
            .def_readonly("flux", &PsfFitResult::flux)
            .def_readonly("chi2", &PsfFitResult::chi2)
            .def_readonly("n_iter", &PsfFitResult::nIter)
            .def_readonly("status", &PsfFitResult::status)
            .def_property_readonly("status_name", [](PsfFitResult const& r) { return statusName(r.status); })
            .def_readonly("message", &PsfFitResult::message);

    m.def(
            "fit_psf",
            [](py::array image, int nGauss, double x0, double y0, std::optional<FitOptions> options) {
                image = nativeFloat(image);
                ImageRef ref = imageRef(image, std::nullopt, x0, y0);
                FitOptions opt = options ? *options : psfFitDefaults();
                SignalPoll poll;
                PsfFitResult res;
                {
                    py::gil_scoped_release release;
                    res = fitPsf(ref, nGauss, opt, std::ref(poll));
                }
                poll.rethrow();
                return res;
            },
            py::arg("image"), py::arg("n_gauss") = 2, py::arg("x0") = 0.0, py::arg("y0") = 0.0,
            py::arg("options") = py::none(),
            "Fit n_gauss (1..4) concentric Gaussians (one free centre, free shapes, non-negative fluxes) to a PSF\n"
            "kernel image with uniform unit weights, evaluated at pixel centres (the kernel image already\n"
            "includes the pixel). options default to default_psf_fit_options() (ftol 1e-6, xtol 1e-3).");
    m.def("default_psf_fit_options", &psfFitDefaults, "FitOptions used by fit_psf when none are given.");

    m.def(
            "nnls_gram",
            [](DArray G, DArray b) {
                G = aligned(G);
                auto bv = toVector(b, "b");
                auto n = static_cast<int>(bv.size());
                if (G.ndim() != 2 || G.shape(0) != n || G.shape(1) != n) throw InputError("G must be (n, n)");
                std::vector<double> g(G.data(), G.data() + G.size());
                auto finite = [](double v) { return std::isfinite(v); };
                if (!std::all_of(g.begin(), g.end(), finite) || !std::all_of(bv.begin(), bv.end(), finite)) {
                    throw InputError("nnls_gram: G and b must be finite");
                }
                double scale = 0.0;
                for (double v : g) scale = std::max(scale, std::abs(v));
                for (int i = 0; i < n; ++i) {
                    for (int j = 0; j < i; ++j) {
                        if (std::abs(g[i * n + j] - g[j * n + i]) > 1e-12 * scale) {
                            throw InputError("nnls_gram: G must be symmetric (a Gram matrix)");
                        }
                    }
                }
                auto x = nnlsGram(g, bv, n);
                if (!std::all_of(x.begin(), x.end(), finite)) {
                    throw InputError("nnls_gram: the solution overflows double precision (b too large for G)");
                }
                return vectorToArray(x);
            },
            py::arg("G"), py::arg("b"), "argmin x^T G x - 2 b^T x subject to x >= 0.");
}

}  // namespace bind
}  // namespace galmix
}  // namespace lsst
