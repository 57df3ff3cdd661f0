// pybind11 bindings of the galmix C++ engine (thin: conversions and GIL handling only).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <sstream>

#include "lsst/galmix/evaluate.h"
#include "lsst/galmix/fastexp.h"
#include "lsst/galmix/gaussian.h"
#include "lsst/galmix/mixture.h"
#include "lsst/galmix/model.h"
#include "lsst/galmix/moments.h"
#include "lsst/galmix/simd.h"
#include "lsst/galmix/stamp.h"
#include "bindings_common.h"

namespace py = pybind11;
using namespace lsst::galmix;

namespace lsst {
namespace galmix {
namespace bind {

DType dtypeOf(py::array const& a, const char* what) {
    if (a.dtype().is(py::dtype::of<double>())) return DType::F64;
    if (a.dtype().is(py::dtype::of<float>())) return DType::F32;
    throw InputError(std::string(what) + " must be float32 or float64");
}

py::array aligned(py::array const& a) {
    auto addr = reinterpret_cast<std::uintptr_t>(a.data());
    if (a.itemsize() <= 0 || addr % static_cast<std::uintptr_t>(std::min<py::ssize_t>(a.itemsize(), 8)) == 0) {
        return a;
    }
    return a.attr("copy")();
}

py::array nativeFloat(py::array const& a) {
    if (a.dtype().is(py::dtype::of<double>()) || a.dtype().is(py::dtype::of<float>())) return aligned(a);
    if (a.dtype().kind() == 'f' && (a.itemsize() == 4 || a.itemsize() == 8)) {
        py::dtype native = a.itemsize() == 8 ? py::dtype::of<double>() : py::dtype::of<float>();
        return a.attr("astype")(native);
    }
    return a;
}

std::optional<py::array> nativeFloat(std::optional<py::array> const& a) {
    if (!a || a->is_none()) return a;
    return nativeFloat(*a);
}

void check2d(py::array const& a, const char* what) {
    if (a.ndim() != 2) throw InputError(std::string(what) + " must be a 2-d array");
    if (a.shape(1) > 1 && a.strides(1) != static_cast<py::ssize_t>(a.itemsize())) {
        throw InputError(std::string(what) + " must be contiguous along x (last axis)");
    }
    if (a.strides(0) % static_cast<py::ssize_t>(a.itemsize()) != 0 || a.strides(0) < 0) {
        throw InputError(std::string(what) + " has an unsupported row stride");
    }
    if (reinterpret_cast<std::uintptr_t>(a.data()) % static_cast<std::uintptr_t>(a.itemsize()) != 0) {
        throw InputError(std::string(what) + " is not aligned to its element size");
    }
}

void checkOrigin(double x0, double y0) {
    if (!std::isfinite(x0) || !std::isfinite(y0)) {
        std::ostringstream os;
        os << "the pixel origin (x0, y0) = (" << x0 << ", " << y0 << ") must be finite";
        throw InputError(os.str());
    }
}

void checkFiniteOutput(py::array const& out) {
    py::object finite = py::module_::import("numpy").attr("isfinite")(out).attr("all")();
    if (!finite.cast<bool>()) {
        throw InputError("the model image overflows double precision (a flux or a peak surface brightness "
                         "beyond ~1e308)");
    }
}

bool SignalPoll::operator()() {
    if (_raised) return true;
    auto now = std::chrono::steady_clock::now();
    if (now - _last < std::chrono::milliseconds(50)) return false;
    _last = now;
    py::gil_scoped_acquire gil;
    _raised = PyErr_CheckSignals() != 0;
    return _raised;
}

void SignalPoll::rethrow() const {
    if (_raised && PyErr_Occurred()) throw py::error_already_set();
}

OutImageRef outImageRef(py::array& out, double x0, double y0) {
    check2d(out, "out");
    if (!out.writeable()) throw InputError("out must be writeable");
    checkOrigin(x0, y0);
    OutImageRef ref;
    ref.data = out.mutable_data();
    ref.dtype = dtypeOf(out, "out");
    ref.ny = out.shape(0);
    ref.nx = out.shape(1);
    ref.rowStride = out.strides(0) / out.itemsize();
    ref.x0 = x0;
    ref.y0 = y0;
    return ref;
}

ImageRef imageRef(py::array const& data, std::optional<py::array> const& sigmaInv, double x0, double y0) {
    check2d(data, "image");
    checkOrigin(x0, y0);
    ImageRef ref;
    ref.data = data.data();
    ref.dtype = dtypeOf(data, "image");
    ref.ny = data.shape(0);
    ref.nx = data.shape(1);
    ref.rowStride = data.strides(0) / data.itemsize();
    ref.x0 = x0;
    ref.y0 = y0;
    if (sigmaInv && !sigmaInv->is_none()) {
        py::array const& s = *sigmaInv;
        check2d(s, "sigma_inv");
        if (s.shape(0) != data.shape(0) || s.shape(1) != data.shape(1)) {
            std::ostringstream os;
            os << "sigma_inv shape (" << s.shape(0) << ", " << s.shape(1) << ") does not match image shape ("
               << data.shape(0) << ", " << data.shape(1) << ")";
            throw InputError(os.str());
        }
        ref.sigmaInv = s.data();
        ref.sigmaDtype = dtypeOf(s, "sigma_inv");
        ref.sigmaRowStride = s.strides(0) / s.itemsize();
    }
    return ref;
}

Mixture mixtureFromArray(py::array_t<double, py::array::c_style | py::array::forcecast> const& a_) {
    auto a = aligned(a_);
    if (a.ndim() == 1 && a.shape(0) == 6) {
        return {Gaussian::fromArray(a.data())};
    }
    if (a.ndim() != 2 || a.shape(1) != 6) {
        throw InputError("a Gaussian mixture is an (N, 6) array of (flux, x, y, xx, xy, yy)");
    }
    Mixture m;
    m.reserve(a.shape(0));
    for (py::ssize_t i = 0; i < a.shape(0); ++i) m.push_back(Gaussian::fromArray(a.data(i, 0)));
    return m;
}

py::array_t<double> mixtureToArray(Mixture const& m) {
    py::array_t<double> out({static_cast<py::ssize_t>(m.size()), py::ssize_t(6)});
    auto r = out.mutable_unchecked<2>();
    for (std::size_t i = 0; i < m.size(); ++i) {
        auto v = m[i].toArray();
        for (int k = 0; k < 6; ++k) r(i, k) = v[k];
    }
    return out;
}

py::array_t<double> matrixToArray(std::vector<double> const& v, py::ssize_t n) {
    if (static_cast<py::ssize_t>(v.size()) != n * n) {
        throw std::logic_error("matrixToArray: " + std::to_string(v.size()) + " values for an " + std::to_string(n) +
                               " x " + std::to_string(n) + " matrix");
    }
    py::array_t<double> out({n, n});
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

py::array_t<double> vectorToArray(std::vector<double> const& v) {
    py::array_t<double> out(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
}

}  // namespace bind
}  // namespace galmix
}  // namespace lsst

using namespace lsst::galmix::bind;

namespace {
const char* const kOverflow =
        "chi2 or its derivatives overflow double precision (data, weights or model fluxes too large)";
}

PYBIND11_MODULE(_galmix, m) {
    m.doc() = "galmix C++ engine: PSF-convolved Gaussian mixtures, their derivatives and fitters.";
    py::register_exception<InputError>(m, "InputError", PyExc_ValueError);

    m.def("dispatch_info", &dispatchInfo, "Describe the build and the SIMD code path used by the kernels.");
    m.def("supported_isas", &supportedIsas, "Kernel instruction sets this CPU runs, fastest first.");
    m.def("set_isa", &setIsa, py::arg("name"), "Use the named kernel set (avx512, avx2, baseline or auto).");
    m.def("active_isa", &activeIsa, "Name of the kernel set in use.");
    m.def(
            "set_normal_equations_path",
            [](std::string const& name) {
                if (name == "auto") {
                    setNormalPath(NormalPath::Auto);
                } else if (name == "sparse") {
                    setNormalPath(NormalPath::Sparse);
                } else if (name == "dense") {
                    setNormalPath(NormalPath::Dense);
                } else {
                    throw InputError("unknown normal-equation path '" + name + "' (auto, sparse or dense)");
                }
            },
            py::arg("name"),
            "Normal equations over only the Jacobian column tiles each block of pixels touches ('sparse'),\n"
            "over all columns ('dense'), or sparse where that pays ('auto', the default: blends, P > 12-16).\n"
            "The results are bit-identical.");
    m.def(
            "normal_equations_path",
            [] {
                switch (normalPath()) {
                    case NormalPath::Sparse: return "sparse";
                    case NormalPath::Dense: return "dense";
                    default: return "auto";
                }
            },
            "The normal-equation path in use ('auto', 'sparse' or 'dense').");
    activeIsa();  // an unusable GALMIX_ISA fails the import with its reason

    m.def(
            "fast_exp",
            [](py::array_t<double, py::array::c_style | py::array::forcecast> x) {
                x = aligned(x);
                py::array_t<double> out(x.size());
                double const* in = x.data();
                double* o = out.mutable_data();
                for (py::ssize_t i = 0; i < x.size(); ++i) o[i] = fastExp(in[i]);
                return out;
            },
            py::arg("x"),
            "The engine's polynomial exp applied element-wise (flattened); exposed for accuracy tests.");

    m.def(
            "gaussian_from_sigma",
            [](double flux, double x, double y, double sx, double sy, double rho) {
                return fromSigma(flux, x, y, {sx, sy, rho}).toArray();
            },
            py::arg("flux"), py::arg("x"), py::arg("y"), py::arg("sigma_x"), py::arg("sigma_y"), py::arg("rho"),
            "Gaussian (flux, x, y, xx, xy, yy) from marginal sigmas and correlation coefficient.");
    m.def(
            "gaussian_to_sigma",
            [](std::array<double, 6> g) {
                auto s = toSigma(Gaussian::fromArray(g.data()));
                return std::make_tuple(s.sigmaX, s.sigmaY, s.rho);
            },
            py::arg("gaussian"), "(sigma_x, sigma_y, rho) of a Gaussian (flux, x, y, xx, xy, yy).");
    m.def(
            "gaussian_from_ellipse",
            [](double flux, double x, double y, double a, double q, double pa) {
                return fromEllipse(flux, x, y, {a, q, pa}).toArray();
            },
            py::arg("flux"), py::arg("x"), py::arg("y"), py::arg("a"), py::arg("q"), py::arg("pa"),
            "Gaussian from major-axis sigma a, axis ratio q = b/a and position angle pa (radians CCW "
            "from +x).");
    m.def(
            "gaussian_to_ellipse",
            [](std::array<double, 6> g) {
                auto e = toEllipse(Gaussian::fromArray(g.data()));
                return std::make_tuple(e.a, e.q, e.theta);
            },
            py::arg("gaussian"), "(a, q, pa) of a Gaussian; position angle pa in (-pi/2, pi/2].");
    m.def(
            "convolve",
            [](py::array_t<double, py::array::c_style | py::array::forcecast> src,
               py::array_t<double, py::array::c_style | py::array::forcecast> psf) {
                return mixtureToArray(convolve(mixtureFromArray(src), mixtureFromArray(psf)));
            },
            py::arg("source"), py::arg("psf"),
            "Convolve an (N, 6) source mixture with an (M, 6) PSF mixture -> (N*M, 6), source-major.");

    using DArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
    m.def(
            "stamp_half_sizes",
            [](DArray mix, double noise, double fluxFraction, double edgeNoise, int limit) {
                return requiredHalfSize(mixtureFromArray(mix), noise, fluxFraction, edgeNoise, limit);
            },
            py::arg("gaussians"), py::arg("noise"), py::arg("flux_fraction"), py::arg("edge_noise"),
            py::arg("limit"),
            "(half_x, half_y): the half-sizes of the stamp that holds the (G, 6) mixture's model, per axis\n"
            "the smallest radius <= limit where at most flux_fraction of the light lies beyond the edges or\n"
            "the surface brightness on them is at most edge_noise * noise (include/lsst/galmix/stamp.h).");
    m.def(
            "adaptive_second_moments",
            [](DArray image, std::optional<DArray> weight, double x0, double y0,
               std::optional<std::pair<double, double>> guess, double sigma0, int maxIter, bool fixCentroid,
               double rtol) {
                image = aligned(image);
                if (image.ndim() != 2) throw InputError("adaptive_second_moments: image must be a 2-d array");
                int ny = static_cast<int>(image.shape(0)), nx = static_cast<int>(image.shape(1));
                if (weight) {
                    *weight = aligned(*weight);
                    if (weight->ndim() != 2 || weight->shape(0) != ny || weight->shape(1) != nx) {
                        throw InputError("adaptive_second_moments: weight must have the image's shape");
                    }
                }
                double gx = guess ? guess->first : 0.0, gy = guess ? guess->second : 0.0;
                AdaptiveMomentsResult r = adaptiveMoments(image.data(), weight ? weight->data() : nullptr, nx, ny,
                                                          x0, y0, guess.has_value(), gx, gy, sigma0, maxIter,
                                                          fixCentroid, rtol);
                return py::make_tuple(r.x, r.y, r.xx, r.xy, r.yy, r.flux, r.ok);
            },
            py::arg("image"), py::arg("weight"), py::arg("x0"), py::arg("y0"), py::arg("guess"),
            py::arg("sigma0"), py::arg("max_iter"), py::arg("fix_centroid"), py::arg("rtol"),
            "(x, y, xx, xy, yy, flux, ok): adaptive second moments of a 2-d image over its finite pixels of\n"
            "positive weight (include/lsst/galmix/moments.h; lsst.galmix.fitting.moments.adaptive_moments).");
    m.def(
            "background_mask",
            [](DArray weight, int x0, int y0, DArray centres, DArray covs, double sigmas) {
                weight = aligned(weight);
                centres = aligned(centres);
                covs = aligned(covs);
                if (weight.ndim() != 2) throw InputError("background_mask: weight must be a 2-d array");
                if (centres.ndim() != 2 || centres.shape(1) != 2 || covs.ndim() != 2 || covs.shape(1) != 3 ||
                    covs.shape(0) != centres.shape(0)) {
                    throw InputError("background_mask: centres must be (N, 2) and covariances (N, 3)");
                }
                int ny = static_cast<int>(weight.shape(0)), nx = static_cast<int>(weight.shape(1));
                py::array_t<bool> out({weight.shape(0), weight.shape(1)});
                static_assert(sizeof(bool) == sizeof(std::uint8_t), "numpy bool is one byte");
                backgroundPixels(weight.data(), nx, ny, x0, y0, centres.data(), covs.data(),
                                 static_cast<int>(centres.shape(0)), sigmas,
                                 reinterpret_cast<std::uint8_t*>(out.mutable_data()));
                return out;
            },
            py::arg("weight"), py::arg("x0"), py::arg("y0"), py::arg("centres"), py::arg("covariances"),
            py::arg("sigmas"),
            "Boolean mask of the stamp's weighted pixels farther than `sigmas` observed sigma from every\n"
            "source: (N, 2) centres, (N, 3) covariance terms (xx, xy, yy); pixel [0, 0] at (x0, y0)\n"
            "(include/lsst/galmix/stamp.h).");

    m.def(
            "render",
            [](py::array_t<double, py::array::c_style | py::array::forcecast> mix, py::array out, double x0,
               double y0) {
                OutImageRef ref = outImageRef(out, x0, y0);
                Mixture m = mixtureFromArray(mix);  // checked by the engine (checkMixture)
                {
                    py::gil_scoped_release release;
                    renderImage(m, ref);
                }
                checkFiniteOutput(out);
                return out;
            },
            py::arg("mixture"), py::arg("out"), py::arg("x0") = 0.0, py::arg("y0") = 0.0,
            "Overwrite `out` (2-d float32/float64, [y, x]) with the (N, 6) mixture evaluated at pixel\n"
            "centres; element [0, 0] is at pixel coordinate (x0, y0). Returns `out`.");

    m.def(
            "chi2",
            [](py::array_t<double, py::array::c_style | py::array::forcecast> mix, py::array data,
               std::optional<py::array> sigmaInv, double x0, double y0) {
                Mixture m = mixtureFromArray(mix);  // checked by the engine (checkMixture)
                data = nativeFloat(data);
                sigmaInv = nativeFloat(sigmaInv);
                ImageRef ref = imageRef(data, sigmaInv, x0, y0);
                double chi2;
                {
                    py::gil_scoped_release release;
                    checkInverseSigma(ref);
                    PreparedImage img(ref);
                    chi2 = computeChi2(m, img);
                }
                if (!std::isfinite(chi2)) throw InputError(kOverflow);
                return chi2;
            },
            py::arg("mixture"), py::arg("data"), py::arg("sigma_inv") = py::none(), py::arg("x0") = 0.0,
            py::arg("y0") = 0.0,
            "sum(sigma_inv^2 (data - model)^2) over pixels of non-zero weight (unit weights if sigma_inv is "
            "None).");

    m.def(
            "normal_equations",
            [](py::array_t<double, py::array::c_style | py::array::forcecast> mix,
               py::array_t<double, py::array::c_style | py::array::forcecast> dmix, py::array data,
               std::optional<py::array> sigmaInv, double x0, double y0) {
                Mixture m = mixtureFromArray(mix);  // checked by the engine (checkMixture)
                dmix = aligned(dmix);
                if (dmix.ndim() != 3 || dmix.shape(0) != static_cast<py::ssize_t>(m.size()) || dmix.shape(1) != 6) {
                    throw InputError("derivatives must be an (N, 6, P) array matching the (N, 6) mixture");
                }
                if (dmix.ndim() == 3 && dmix.shape(2) > kMaxDenseParams) {
                    throw InputError("derivatives: more than " + std::to_string(kMaxDenseParams) +
                                     " parameters (dense normal equations)");
                }
                int P = static_cast<int>(dmix.shape(2));
                std::vector<GaussianDeriv> derivs;
                auto r = dmix.unchecked<3>();
                for (py::ssize_t g = 0; g < dmix.shape(0); ++g) {
                    for (int p = 0; p < P; ++p) {
                        GaussianDeriv d{static_cast<int>(g), p, {}};
                        bool any = false;
                        for (int k = 0; k < 6; ++k) {
                            d.d[k] = r(g, k, p);
                            any = any || d.d[k] != 0.0;
                        }
                        if (any) derivs.push_back(d);
                    }
                }
                data = nativeFloat(data);
                sigmaInv = nativeFloat(sigmaInv);
                ImageRef ref = imageRef(data, sigmaInv, x0, y0);
                NormalEquations ne = makeNormalEquations(P);
                {
                    py::gil_scoped_release release;
                    checkInverseSigma(ref);
                    PreparedImage img(ref);
                    accumulateNormalEquations(m, derivs, img, ne);
                }
                if (!std::isfinite(ne.chi2) || !std::all_of(ne.H.begin(), ne.H.end(), [](double v) {
                        return std::isfinite(v);
                    }) || !std::all_of(ne.b.begin(), ne.b.end(), [](double v) { return std::isfinite(v); })) {
                    throw InputError(kOverflow);
                }
                std::vector<double> grad(ne.b.size());
                for (std::size_t i = 0; i < grad.size(); ++i) grad[i] = -2.0 * ne.b[i];
                return py::make_tuple(ne.chi2, vectorToArray(grad), matrixToArray(ne.H, P), vectorToArray(ne.b));
            },
            py::arg("mixture"), py::arg("derivatives"), py::arg("data"), py::arg("sigma_inv") = py::none(),
            py::arg("x0") = 0.0, py::arg("y0") = 0.0,
            "One pass over the weighted pixels: (chi2, grad (P,), H = J^T W J (P, P), b = J^T W r (P,)),\n"
            "r = data - model, grad = d chi2/dp = -2 b. `derivatives[g, k, p]` = d(mixture[g, k])/d(p_p)\n"
            "(sparse in practice: zeros are skipped).");

    bindModel(m);
    bindOptimize(m);
}
