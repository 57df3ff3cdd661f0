#include "lsst/galmix/optimize.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>

namespace lsst {
namespace galmix {

namespace {

constexpr int kMaxIterLimit = 1000000;
constexpr int kMaxEvalLimit = 10000000;
constexpr double kMinLambda0 = 1e-10;  // the damping never drops below this after an accepted step
constexpr double kMaxLambda0 = 1e10;   // above this the damping loop gives up at once

// In-place Cholesky of a symmetric positive-definite n x n matrix (lower triangle); false if not SPD.
bool cholesky(std::vector<double>& A, int n) {
    for (int j = 0; j < n; ++j) {
        double d = A[j * n + j];
        for (int k = 0; k < j; ++k) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0.0) || !std::isfinite(d)) return false;
        d = std::sqrt(d);
        A[j * n + j] = d;
        for (int i = j + 1; i < n; ++i) {
            double s = A[i * n + j];
            for (int k = 0; k < j; ++k) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / d;
        }
    }
    return true;
}

void choleskySolve(std::vector<double> const& L, int n, double* x) {
    for (int i = 0; i < n; ++i) {
        double s = x[i];
        for (int k = 0; k < i; ++k) s -= L[i * n + k] * x[k];
        x[i] = s / L[i * n + i];
    }
    for (int i = n - 1; i >= 0; --i) {
        double s = x[i];
        for (int k = i + 1; k < n; ++k) s -= L[k * n + i] * x[k];
        x[i] = s / L[i * n + i];
    }
}

std::vector<double> subMatrix(std::vector<double> const& H, int P, std::vector<int> const& rows,
                              std::vector<int> const& cols) {
    std::vector<double> out(rows.size() * cols.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        for (std::size_t j = 0; j < cols.size(); ++j) out[i * cols.size() + j] = H[rows[i] * P + cols[j]];
    }
    return out;
}

bool allFinite(std::vector<double> const& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

// Box bounds of a parameter (Sersic n, ln reff). The optimizer works in the natural parameters and projects
// each trial point onto the box; a parameter at a bound whose gradient points outward is held there for
// that step. A logistic map of the box onto the real line would trap parameters instead: once a step
// lands near a bound the map's derivative vanishes and no later step brings the parameter back (an
// exponential disk fitted from n = 2 under a 0.92" PSF ended at n = 6, 0.11 mag too bright).
struct Bounds {
    bool bounded = false;
    double lo = 0.0, hi = 0.0;
    double clamp(double p) const { return bounded ? std::min(std::max(p, lo), hi) : p; }
    // Whether a step of sign `direction` from p would leave the box.
    bool blocks(double p, double direction) const {
        return bounded && ((p <= lo && direction <= 0.0) || (p >= hi && direction >= 0.0));
    }
};

// Damping increases per iteration before the fit gives up. Each pass multiplies lambda by 10 (step too
// long, Cholesky failure) or by nu (rejected trial: 2, 4, 8, ... in a row), so 1e-10 -> 1e12 takes at
// most 22 tenfold and 12 nu rises.
constexpr int kMaxDampingSteps = 40;

// What a pass over the pixels leaves besides its normal equations: the unit-flux models of its bands
// (FitOptions::fluxImages) and, where every source has one flux per band, each band's normal equations and
// the parameters the pass was linearised at, from which `finish` rescales the Fisher matrix to the final
// fluxes (rescaledFisher).
struct PassProducts {
    std::vector<FluxImages> images;
    std::vector<BandNormalEquations> bands;
    std::vector<double> at;
    void clear() {
        images.clear();
        bands.clear();
        at.clear();
    }
};

class SceneFitter {
public:
    SceneFitter(Scene const& scene, std::vector<BandData> const& bands, std::vector<char> const& free,
                FitOptions const& opt, StopCheck const& stop)
            : _scene(scene), _bands(bands), _opt(opt), _stop(stop), _P(scene.nParams()) {
        if (!free.empty() && static_cast<int>(free.size()) != _P) {
            throw InputError("free mask must have one entry per parameter");
        }
        if (!opt.priorMean.empty() && static_cast<int>(opt.priorMean.size()) != _P) {
            throw InputError("priorMean must have one entry per parameter");
        }
        if (opt.priorMean.size() != opt.priorSigma.size()) {
            throw InputError("priorMean and priorSigma must have the same length");
        }
        if ((!opt.lower.empty() && static_cast<int>(opt.lower.size()) != _P) || opt.lower.size() != opt.upper.size()) {
            throw InputError("lower and upper bounds must both have one entry per parameter");
        }
        auto const& info = scene.paramInfo();
        _bounds.resize(_P);
        _prec.assign(_P, 0.0);
        for (int i = 0; i < _P; ++i) {
            bool isFree = free.empty() || free[i];
            if (info[i].kind == ParamKind::Flux || isSkyKind(info[i].kind)) {
                if (isFree) {
                    _fluxes.push_back(i);
                    _signed.push_back(isSkyKind(info[i].kind));
                }
            } else if (isFree) {
                _nl.push_back(i);
            }
            if (info[i].kind == ParamKind::SersicN) _bounds[i] = {true, opt.nMin, opt.nMax};
            if (!opt.lower.empty() && info[i].kind != ParamKind::Flux && std::isfinite(opt.lower[i]) &&
                std::isfinite(opt.upper[i]) && opt.upper[i] > opt.lower[i]) {
                _bounds[i] = {true, opt.lower[i], opt.upper[i]};
            }
            if (!opt.priorSigma.empty() && info[i].kind != ParamKind::Flux && !isSkyKind(info[i].kind)) {
                double s = opt.priorSigma[i];
                if (s > 0.0 && std::isfinite(s)) {
                    if (!std::isfinite(opt.priorMean[i])) throw InputError("non-finite prior mean");
                    _prec[i] = 1.0 / (s * s);
                }
            }
        }
        // Sources with one free flux per band (one component): their model in a band is that flux times
        // a unit model, so normal equations at unit fluxes can be rescaled to any fluxes (unitStart).
        int nS = scene.nSources(), nB = scene.nBands();
        _sourceFlux.assign(static_cast<std::size_t>(nS) * nB, -1);
        std::vector<int> count(_sourceFlux.size(), 0);
        bool single = true;
        for (int i = 0; i < _P; ++i) {
            if (info[i].kind != ParamKind::Flux) continue;
            std::size_t k = static_cast<std::size_t>(info[i].source) * nB + info[i].band;
            _sourceFlux[k] = i;
            single &= ++count[k] == 1 && (free.empty() || free[i]);
        }
        _unitStart = single && std::all_of(count.begin(), count.end(), [](int c) { return c == 1; });
    }

    FitResult run(std::vector<double> params) {
        FitResult res;
        res.priorPrecision = _prec;
        for (auto const& b : _bands) res.nPix += static_cast<int>(b.image.nPixels());
        if (static_cast<int>(params.size()) != _P) throw InputError("initial parameters have the wrong length");
        if (!allFinite(params)) throw InputError("non-finite initial parameters");
        for (int i : _nl) params[i] = _bounds[i].clamp(params[i]);
        // The first normal equations must be linearised at the fluxes of the start, since the nonlinear
        // columns scale with them. Sources of one component take one pass at unit fluxes, rescaled
        // (unitStart); otherwise, from given fluxes (a previous fit's) the first pass linearises at them
        // and solves the fluxes itself; otherwise a pass solves the fluxes first.
        bool unit = !_nl.empty() && _unitStart;
        bool givenFluxes = !unit && _opt.startFluxes && !_nl.empty() && anyPositiveFlux(params);
        // One pass per trial point: the normal equations at (theta', F) give both the Gauss-Newton system
        // for the next step and, through the flux block, the exact non-negative fluxes F' and chi2 at theta'.
        NormalEquations ne;
        double chi2 = 0.0;
        bool started = unit && unitStart(params, ne, chi2);
        if (!started) chi2 = givenFluxes ? 0.0 : solveFluxes(params);
        double obj = chi2 + priorTerm(params);
        if (!std::isfinite(obj)) return finish(res, params, chi2, obj, 0, FitStatus::NonFinite, "non-finite chi2");
        if (_nl.empty()) return finish(res, params, chi2, obj, 0, FitStatus::Converged, "fluxes only");
        std::vector<double> neFluxes = fluxesOf(params);
        if (!started) {
            std::vector<double> p(params);
            double c;
            if (!evaluateTrial(p, ne, c, _cur)) {
                return finish(res, params, chi2, obj, 0, FitStatus::NonFinite, "non-finite normal equations");
            }
            if (givenFluxes) {
                params = p;
                chi2 = c;
                obj = chi2 + priorTerm(params);
            }
        }
        double lambda = _opt.lambda0;
        double nu = 2.0;  // growth of lambda on the next rejected trial (Nielsen)
        int nA = static_cast<int>(_nl.size());
        for (int iter = 1; iter <= _opt.maxIter; ++iter) {
            if (_stop && _stop()) {
                return finish(res, params, chi2, obj, iter - 1, FitStatus::Error, "interrupted");
            }
            std::vector<double> Hr, br;
            if (!reducedSystem(ne, neFluxes, params, Hr, br)) {
                return finish(res, params, chi2, obj, iter, FitStatus::NonFinite, "non-finite normal equations");
            }
            std::vector<double> diag(nA);
            double maxDiag = 0.0;
            for (int a = 0; a < nA; ++a) maxDiag = std::max(maxDiag, Hr[a * nA + a]);
            if (!(maxDiag > 0.0)) {
                return finish(res, params, chi2, obj, iter, FitStatus::Singular, "no parameter affects the model");
            }
            for (int a = 0; a < nA; ++a) diag[a] = std::max(Hr[a * nA + a], 1e-12 * maxDiag);
            // Parameters at a bound that the gradient pushes outward take no part in this step.
            std::vector<char> held(nA, 0);
            for (int a = 0; a < nA; ++a) held[a] = _bounds[_nl[a]].blocks(params[_nl[a]], br[a]);
            if (gaussNewtonDecrease(Hr, br, held) <= _opt.ftol * std::max(obj, 1e-300)) {
                // Converged: the undamped step would lower the objective by less than ftol (relative), so
                // the point is within ~sqrt(ftol chi2) of its errors from the minimum. Stopping here saves
                // the trial pass that would only confirm it; `ne` is already the Fisher matrix here.
                return finish(res, params, chi2, obj, iter, FitStatus::Converged,
                              "converged (predicted decrease)", &ne, &neFluxes);
            }
            bool accepted = false;
            // After a rejected trial, lambda grows until the step is at most half the rejected one: raising
            // a small lambda tenfold barely shortens the step, and each trial costs a pass over the pixels.
            double maxStep = std::numeric_limits<double>::infinity();
            // Every pass of this loop multiplies lambda by 10 (from >= 1e-10) until it exceeds 1e10-1e12
            // and returns, so it ends within ~25 passes; the counter makes that independent of lambda.
            for (int attempt = 0; !accepted; ++attempt) {
                if (attempt > kMaxDampingSteps) {
                    return finish(res, params, chi2, obj, iter, FitStatus::Singular,
                                  "damping did not produce an acceptable step", &ne, &neFluxes);
                }
                if (_nEval >= _opt.maxEval) {
                    return finish(res, params, chi2, obj, iter, FitStatus::MaxIter, "maximum evaluations reached",
                                  &ne, &neFluxes);
                }
                if (_stop && _stop()) return finish(res, params, chi2, obj, iter, FitStatus::Error, "interrupted");
                std::vector<double> A(Hr);
                for (int a = 0; a < nA; ++a) A[a * nA + a] += lambda * diag[a] + 1e-14 * maxDiag;
                std::vector<double> delta(br);
                holdFixed(A, delta, held);
                if (!cholesky(A, nA)) {
                    lambda *= 10.0;
                    if (lambda > 1e12) {
                        return finish(res, params, chi2, obj, iter, FitStatus::Singular, "singular normal equations");
                    }
                    continue;
                }
                choleskySolve(A, nA, delta.data());
                double predicted = 0.0;  // decrease of the quadratic model: delta.b + lambda delta.D.delta
                for (int a = 0; a < nA; ++a) {
                    if (!held[a]) predicted += delta[a] * (br[a] + lambda * diag[a] * delta[a]);
                }
                std::vector<double> pT(params);
                double stepNorm = 0.0;
                for (int a = 0; a < nA; ++a) {
                    int i = _nl[a];
                    pT[i] = _bounds[i].clamp(params[i] + delta[a]);
                    double error = 1.0 / std::sqrt(std::max(Hr[a * nA + a], 1e-300));
                    stepNorm = std::max(stepNorm, std::abs(pT[i] - params[i]) / error);
                }
                if (stepNorm > maxStep && lambda <= 1e10) {
                    lambda *= 10.0;
                    continue;
                }
                std::vector<double> fT = fluxesOf(pT);
                NormalEquations neT;
                double chi2T = std::numeric_limits<double>::infinity();
                bool ok = allFinite(pT) && evaluateTrial(pT, neT, chi2T, _trial);
                double objT = ok ? chi2T + priorTerm(pT) : std::numeric_limits<double>::infinity();
                if (std::isfinite(objT) && objT <= obj) {
                    accepted = true;
                    double decrease = obj - objT;
                    params = pT;
                    chi2 = chi2T;
                    obj = objT;
                    ne = std::move(neT);
                    neFluxes = fT;
                    std::swap(_cur, _trial);
                    // Gain-ratio update (Nielsen's, with a floor of 0.1 instead of 1/3): lambda falls tenfold
                    // where the quadratic model predicted the decrease well (rho near 1), less or not at all
                    // where it did not; a fit crawling along a curved valley otherwise alternates an
                    // overshooting step with a tenfold rise (doc/engine.rst).
                    double rho = predicted > 0.0 ? decrease / predicted : 0.0;
                    double t = 2.0 * rho - 1.0;
                    lambda = std::max(lambda * std::max(0.1, 1.0 - t * t * t), 1e-10);
                    nu = 2.0;
                    // Steps are measured in units of the parameter errors scaled by the residual level
                    // (capped at 1), so that noiseless fits (PSF kernels) are not stopped early.
                    double dof = std::max(res.nPix - static_cast<int>(_nl.size() + _fluxes.size()), 1);
                    double scale = std::min(1.0, std::sqrt(std::max(obj, 0.0) / dof));
                    if (decrease <= _opt.ftol * std::max(obj, 1e-300) || stepNorm < _opt.xtol * scale) {
                        return finish(res, params, chi2, obj, iter, FitStatus::Converged, "converged", &ne,
                                      &neFluxes);
                    }
                } else {
                    maxStep = 0.5 * stepNorm;
                    lambda *= nu;
                    nu *= 2.0;
                    if (lambda > 1e10) {
                        // No damped step lowers the objective: a minimum to numerical precision.
                        return finish(res, params, chi2, obj, iter, FitStatus::Converged,
                                      "converged (no further decrease)", &ne, &neFluxes);
                    }
                }
            }
        }
        return finish(res, params, chi2, obj, _opt.maxIter, FitStatus::MaxIter, "maximum iterations reached",
                      &ne, &neFluxes);
    }

private:
    // Take the held parameters out of the system A x = d (identity rows, zero right-hand side).
    static void holdFixed(std::vector<double>& A, std::vector<double>& d, std::vector<char> const& held) {
        int nA = static_cast<int>(d.size());
        for (int a = 0; a < nA; ++a) {
            if (!held[a]) continue;
            for (int c = 0; c < nA; ++c) A[a * nA + c] = A[c * nA + a] = 0.0;
            A[a * nA + a] = 1.0;
            d[a] = 0.0;
        }
    }

    // Decrease of the objective predicted by the undamped Gauss-Newton step of the reduced system,
    // br^T Hr^-1 br over the parameters not held at a bound (infinity if Hr is not positive definite).
    static double gaussNewtonDecrease(std::vector<double> const& Hr, std::vector<double> const& br,
                                      std::vector<char> const& held) {
        int nA = static_cast<int>(br.size());
        std::vector<double> A(Hr), d(br);
        holdFixed(A, d, held);
        if (!cholesky(A, nA)) return std::numeric_limits<double>::infinity();
        choleskySolve(A, nA, d.data());
        double decrease = 0.0;
        for (int a = 0; a < nA; ++a) decrease += d[a] * (held[a] ? 0.0 : br[a]);
        return decrease >= 0.0 ? decrease : std::numeric_limits<double>::infinity();
    }

    double priorTerm(std::vector<double> const& p) const {
        double t = 0.0;
        for (int i = 0; i < _P; ++i) {
            if (_prec[i] > 0.0) {
                double d = p[i] - _opt.priorMean[i];
                t += d * d * _prec[i];
            }
        }
        return t;
    }

    std::vector<double> fluxesOf(std::vector<double> const& p) const {
        std::vector<double> f;
        for (int i : _fluxes) f.push_back(p[i]);
        return f;
    }

    std::vector<double> solveFluxSystem(std::vector<double> const& G, std::vector<double> const& b) const {
        int nF = static_cast<int>(b.size());
        if (!_opt.nonNegativeFluxes) return solveUnconstrained(G, b, nF);
        if (std::find(_signed.begin(), _signed.end(), char(1)) == _signed.end()) return nnlsGram(G, b, nF);
        return nnlsWithSigned(G, b, nF);
    }

    // Non-negative fluxes with unconstrained sky levels: the sky levels are eliminated exactly (Schur
    // complement of their block), the fluxes solved by NNLS on the reduced system, the sky levels recovered.
    std::vector<double> nnlsWithSigned(std::vector<double> const& G, std::vector<double> const& b, int n) const {
        std::vector<int> pos, sgn;
        for (int a = 0; a < n; ++a) (_signed[a] ? sgn : pos).push_back(a);
        int nP = static_cast<int>(pos.size()), nS = static_cast<int>(sgn.size());
        std::vector<double> Gss = subMatrix(G, n, sgn, sgn);
        std::vector<double> x(n, 0.0);
        if (!cholesky(Gss, nS)) return solveUnconstrained(G, b, n);
        // X = Gss^-1 G_s,p (column by column) and y = Gss^-1 b_s.
        std::vector<double> X(static_cast<std::size_t>(nS) * nP), col(nS), y(nS);
        for (int k = 0; k < nS; ++k) y[k] = b[sgn[k]];
        choleskySolve(Gss, nS, y.data());
        for (int p = 0; p < nP; ++p) {
            for (int k = 0; k < nS; ++k) col[k] = G[sgn[k] * n + pos[p]];
            choleskySolve(Gss, nS, col.data());
            for (int k = 0; k < nS; ++k) X[k * nP + p] = col[k];
        }
        std::vector<double> Gr(static_cast<std::size_t>(nP) * nP), br(nP);
        for (int p = 0; p < nP; ++p) {
            br[p] = b[pos[p]];
            for (int k = 0; k < nS; ++k) br[p] -= G[pos[p] * n + sgn[k]] * y[k];
            for (int q = 0; q < nP; ++q) {
                double v = G[pos[p] * n + pos[q]];
                for (int k = 0; k < nS; ++k) v -= G[pos[p] * n + sgn[k]] * X[k * nP + q];
                Gr[p * nP + q] = v;
            }
        }
        std::vector<double> f = nP > 0 ? nnlsGram(Gr, br, nP) : std::vector<double>();
        for (int p = 0; p < nP; ++p) x[pos[p]] = f[p];
        for (int k = 0; k < nS; ++k) {
            double v = y[k];
            for (int p = 0; p < nP; ++p) v -= X[k * nP + p] * f[p];
            x[sgn[k]] = v;
        }
        return x;
    }

    // A start from moments (fluxes unknown) in one pass instead of two: the normal equations at unit source
    // fluxes, per band, give the exact fluxes F at these nonlinear parameters (the flux block does not
    // depend on them) and are then rescaled to F: a source's nonlinear columns in band b scale with its flux
    // there, and the residual moves by -dF times the flux columns. The result is the normal equations a
    // pass at F gives (to rounding), chi2 at F, and params with the fluxes F. Needs _unitStart; false
    // (nothing changed) when the pass fails, and the caller then solves the fluxes in a pass of its own.
    bool unitStart(std::vector<double>& params, NormalEquations& ne, double& chi2) const {
        std::vector<double> p(params);
        for (std::size_t a = 0; a < _fluxes.size(); ++a) {
            if (!_signed[a]) p[_fluxes[a]] = 1.0;
        }
        std::vector<char> active(_P, 0);
        for (int i : _nl) active[i] = 1;
        for (int i : _fluxes) active[i] = 1;
        NormalEquations one;
        ++_nEval;
        _cur.at = p;
        try {
            one = sceneNormalEquations(_scene, p, _bands, active, _opt.fluxImages ? &_cur.images : nullptr,
                                       &_cur.bands);
        } catch (InputError const&) {
            _cur.clear();
            return false;
        }
        if (!allFinite(one.H) || !allFinite(one.b) || !std::isfinite(one.chi2)) {
            _cur.clear();
            return false;
        }
        std::vector<double> moves;
        double c2 = solveFluxesAt(one, p, moves);  // p now holds the exact fluxes F
        std::vector<double> dF(_P, 0.0);  // by parameter: the move of each linear parameter
        for (std::size_t a = 0; a < _fluxes.size(); ++a) dF[_fluxes[a]] = moves[a];
        ne = makeNormalEquations(_P);
        std::vector<double> scale;
        for (int b = 0; b < _scene.nBands(); ++b) {
            auto const& g = _cur.bands[b].global;
            auto const& h = _cur.bands[b].ne;
            int n = static_cast<int>(g.size());
            bandScales(b, p, scale);  // the pass was at unit fluxes: the scales are the fluxes F
            for (int i = 0; i < n; ++i) {
                double r = h.b[i];
                for (int j = 0; j < n; ++j) r -= dF[g[j]] * h.H[i * n + j];
                ne.b[g[i]] += scale[i] * r;
                for (int j = 0; j < n; ++j) ne.H[g[i] * _P + g[j]] += scale[i] * scale[j] * h.H[i * n + j];
            }
        }
        if (!std::isfinite(c2) || !allFinite(ne.H) || !allFinite(ne.b)) {
            _cur.clear();
            return false;
        }
        ne.chi2 = c2;
        chi2 = c2;
        params = p;
        return true;
    }

    bool anyPositiveFlux(std::vector<double> const& params) const {
        for (std::size_t a = 0; a < _fluxes.size(); ++a) {
            if (!_signed[a] && params[_fluxes[a]] > 0.0) return true;
        }
        return false;
    }

    // Normal equations (free nonlinear parameters and all free fluxes) at params, whose fluxes are the
    // linearisation point F; then replace the fluxes by the exact solution F' at these nonlinear
    // parameters and return chi2(F') = chi2(F) - 2 dF^T b_f + dF^T G dF (exact: the model is linear in F).
    // With FitOptions::fluxImages the pass also fills `images` (emptied when the pass fails).
    bool evaluateTrial(std::vector<double>& params, NormalEquations& ne, double& chi2,
                       PassProducts& out) const {
        bool ok = evaluatePass(params, ne, chi2, out);
        if (!ok) out.clear();
        return ok;
    }

    bool evaluatePass(std::vector<double>& params, NormalEquations& ne, double& chi2,
                      PassProducts& out) const {
        ++_nEval;
        std::vector<char> active(_P, 0);
        for (int i : _nl) active[i] = 1;
        for (int i : _fluxes) active[i] = 1;
        out.bands.clear();
        out.at.clear();
        if (_unitStart) out.at = params;
        try {
            ne = sceneNormalEquations(_scene, params, _bands, active, _opt.fluxImages ? &out.images : nullptr,
                                      _unitStart ? &out.bands : nullptr);
        } catch (InputError const&) {
            return false;  // e.g. a size so small that a covariance degenerates: reject the step
        }
        if (!allFinite(ne.H) || !allFinite(ne.b) || !std::isfinite(ne.chi2)) return false;
        chi2 = ne.chi2;
        if (_fluxes.empty()) return true;
        std::vector<double> moves;
        chi2 = solveFluxesAt(ne, params, moves);
        return std::isfinite(chi2);
    }

    // Replace the free fluxes of `params` (the fluxes `ne` is linearised at) by the exact (non-negative)
    // solution at its nonlinear parameters, from the flux block of `ne`; `moves` gets their changes (per
    // entry of _fluxes). Returns chi2 at the new fluxes (updatedChi2).
    double solveFluxesAt(NormalEquations const& ne, std::vector<double>& params,
                         std::vector<double>& moves) const {
        int nF = static_cast<int>(_fluxes.size());
        std::vector<double> G = subMatrix(ne.H, _P, _fluxes, _fluxes);
        std::vector<double> bf(nF), c(nF);
        for (int a = 0; a < nF; ++a) {
            bf[a] = ne.b[_fluxes[a]];
            c[a] = bf[a];
            for (int k = 0; k < nF; ++k) c[a] += G[a * nF + k] * params[_fluxes[k]];
        }
        std::vector<double> F = solveFluxSystem(G, c);
        moves.resize(nF);
        for (int a = 0; a < nF; ++a) {
            moves[a] = F[a] - params[_fluxes[a]];
            params[_fluxes[a]] = F[a];
        }
        return updatedChi2(ne.chi2, moves, bf, G, params);
    }

    // chi2 after the fluxes move by dF from a point with chi2 `chi2`, flux-block b and Gram matrix G:
    // chi2 - 2 dF^T b + dF^T G dF (exact for a linear model). When that sum cancels beyond double
    // precision (e.g. a Gaussian collapsed far below a pixel has an enormous Gram entry), chi2 is
    // recomputed by a pass over the pixels at `params` (which hold the new fluxes).
    double updatedChi2(double chi2, std::vector<double> const& dF, std::vector<double> const& b,
                       std::vector<double> const& G, std::vector<double> const& params) const {
        int nF = static_cast<int>(dF.size());
        double lin = 0.0, quad = 0.0;
        for (int a = 0; a < nF; ++a) {
            double gd = 0.0;
            for (int k = 0; k < nF; ++k) gd += G[a * nF + k] * dF[k];
            quad += dF[a] * gd;
            lin += 2.0 * b[a] * dF[a];
        }
        double updated = chi2 - lin + quad;
        double magnitude = chi2 + std::abs(lin) + std::abs(quad);
        if (!(updated > 1e-9 * magnitude)) return sceneChi2(_scene, params, _bands);
        return updated;
    }

    // Solve the free fluxes (non-negative) for the current nonlinear parameters; returns the data chi2.
    double solveFluxes(std::vector<double>& params) const {
        ++_nEval;
        int nF = static_cast<int>(_fluxes.size());
        if (nF == 0) return sceneChi2(_scene, params, _bands);
        std::vector<char> active(_P, 0);
        for (int i : _fluxes) {
            active[i] = 1;
            params[i] = 0.0;
        }
        // With the free fluxes at zero, b = M^T W (d - m_fixed) and H_ff is the Gram matrix.
        _cur.bands.clear();  // a pass with the fluxes at zero: nothing to rescale
        _cur.at.clear();
        std::vector<FluxImages>* images = _opt.fluxImages ? &_cur.images : nullptr;
        NormalEquations ne = sceneNormalEquations(_scene, params, _bands, active, images);
        std::vector<double> G = subMatrix(ne.H, _P, _fluxes, _fluxes);
        std::vector<double> b(nF);
        for (int a = 0; a < nF; ++a) b[a] = ne.b[_fluxes[a]];
        std::vector<double> F = solveFluxSystem(G, b);
        for (int a = 0; a < nF; ++a) params[_fluxes[a]] = F[a];
        return updatedChi2(ne.chi2, F, b, G, params);
    }

    static std::vector<double> solveUnconstrained(std::vector<double> const& G, std::vector<double> const& b, int n) {
        // Columns without pixels (zero diagonal) stay at zero.
        std::vector<int> use;
        double maxD = 0.0;
        for (int a = 0; a < n; ++a) maxD = std::max(maxD, G[a * n + a]);
        for (int a = 0; a < n; ++a) {
            if (G[a * n + a] > 1e-14 * maxD) use.push_back(a);
        }
        std::vector<double> x(n, 0.0);
        int m = static_cast<int>(use.size());
        if (m == 0) return x;
        std::vector<double> A = subMatrix(G, n, use, use);
        std::vector<double> y(m);
        for (int a = 0; a < m; ++a) y[a] = b[use[a]];
        if (!cholesky(A, m)) return nnlsGram(G, b, n);
        choleskySolve(A, m, y.data());
        for (int a = 0; a < m; ++a) x[use[a]] = y[a];
        return x;
    }

    // Gauss-Newton system for the free nonlinear parameters from normal equations
    // linearised at fluxes neFluxes, with the fluxes profiled out (Schur complement over the fluxes not
    // at their bound at the current solution) and priors added.
    bool reducedSystem(NormalEquations const& ne, std::vector<double> const& neFluxes,
                       std::vector<double> const& params, std::vector<double>& Hr, std::vector<double>& br) const {
        std::vector<int> passive;
        for (std::size_t a = 0; a < _fluxes.size(); ++a) {
            int i = _fluxes[a];
            if (params[i] != 0.0 || neFluxes[a] != 0.0 || !_opt.nonNegativeFluxes || _signed[a]) passive.push_back(i);
        }
        int nA = static_cast<int>(_nl.size());
        int nF = static_cast<int>(passive.size());
        Hr = subMatrix(ne.H, _P, _nl, _nl);
        br.resize(nA);
        std::vector<double> Haf = subMatrix(ne.H, _P, _nl, passive);
        for (int a = 0; a < nA; ++a) br[a] = ne.b[_nl[a]];
        if (nF > 0) {
            std::vector<double> Hff = subMatrix(ne.H, _P, passive, passive);
            if (cholesky(Hff, nF)) {
                std::vector<double> bf(nF);
                for (int f = 0; f < nF; ++f) bf[f] = ne.b[passive[f]];
                choleskySolve(Hff, nF, bf.data());
                std::vector<double> X(nF);
                for (int a = 0; a < nA; ++a) {
                    for (int f = 0; f < nF; ++f) X[f] = Haf[a * nF + f];
                    choleskySolve(Hff, nF, X.data());  // X = Hff^-1 H_fa (column a)
                    for (int f = 0; f < nF; ++f) br[a] -= Haf[a * nF + f] * bf[f];
                    for (int c = 0; c < nA; ++c) {
                        double s = 0.0;
                        for (int f = 0; f < nF; ++f) s += Haf[c * nF + f] * X[f];
                        Hr[a * nA + c] -= s;
                    }
                }
            }
        }
        for (int a = 0; a < nA; ++a) {
            int i = _nl[a];
            if (_prec[i] > 0.0) {
                Hr[a * nA + a] += _prec[i];
                br[a] += (_opt.priorMean[i] - params[i]) * _prec[i];
            }
        }
        return allFinite(Hr) && allFinite(br);
    }

    // True if normal equations evaluated at the final nonlinear parameters with fluxes neFluxes can serve as
    // the Fisher matrix: every parameter was active (none fixed) and no flux moved by more than 1e-4 of
    // itself since (the nonlinear columns scale with the fluxes, so the Fisher matrix is then exact to
    // ~1e-4, far below the accuracy errors are quoted to). Saves one pass over the pixels per fit.
    bool reusable(NormalEquations const* ne, std::vector<double> const* neFluxes,
                  std::vector<double> const& params) const {
        if (!ne || !neFluxes || static_cast<int>(_nl.size() + _fluxes.size()) != _P) return false;
        if (static_cast<int>(ne->H.size()) != _P * _P) return false;
        for (std::size_t a = 0; a < _fluxes.size(); ++a) {
            if (_signed[a]) continue;  // no other column depends on a sky level
            double f = params[_fluxes[a]], f0 = (*neFluxes)[a];
            if (std::abs(f - f0) > 1e-4 * std::abs(f)) return false;
        }
        return true;
    }

    // The Fisher matrix at `params` from the bands of the last pass (_cur), linearised at the same
    // nonlinear parameters but other fluxes: where every source has one flux per band, a nonlinear
    // parameter's column in a band is that flux times the unit model's, so each band's block is rescaled by
    // the flux ratios (as unitStart rescales a pass at unit fluxes); flux and sky columns do not depend on
    // the fluxes. The same matrix as a pass at `params` to rounding. False where it does not apply (no
    // per-band equations, fixed parameters, a flux at zero in the pass).
    // Per column of the last pass's equations of band b (_cur.bands[b]), the factor by which it changes when
    // the fluxes go from those of the pass (_cur.at) to those of `to`: a nonlinear parameter's column is its
    // source's flux in the band times the unit model's, flux and sky columns do not depend on the fluxes.
    // False where a source's flux in the pass is not positive (its columns were zero).
    bool bandScales(int b, std::vector<double> const& to, std::vector<double>& scale) const {
        auto const& info = _scene.paramInfo();
        auto const& g = _cur.bands[b].global;
        int nB = _scene.nBands();
        scale.assign(g.size(), 1.0);
        for (std::size_t i = 0; i < g.size(); ++i) {
            ParamInfo const& pi = info[g[i]];
            if (pi.kind == ParamKind::Flux || isSkyKind(pi.kind)) continue;
            int k = _sourceFlux[static_cast<std::size_t>(pi.source) * nB + b];
            if (k < 0 || !(_cur.at[k] > 0.0)) return false;
            scale[i] = to[k] / _cur.at[k];
        }
        return true;
    }

    bool rescaledFisher(std::vector<double> const& params, std::vector<double>& H) const {
        int nB = _scene.nBands();
        if (!_unitStart || static_cast<int>(_nl.size() + _fluxes.size()) != _P) return false;
        if (static_cast<int>(_cur.bands.size()) != nB || static_cast<int>(_cur.at.size()) != _P) return false;
        for (int i : _nl) {
            if (!(params[i] == _cur.at[i])) return false;
        }
        std::vector<double> out(static_cast<std::size_t>(_P) * _P, 0.0);
        std::vector<double> scale;
        for (int b = 0; b < nB; ++b) {
            auto const& g = _cur.bands[b].global;
            auto const& h = _cur.bands[b].ne;
            int n = static_cast<int>(g.size());
            if (!bandScales(b, params, scale)) return false;
            for (int i = 0; i < n; ++i) {
                for (int j = 0; j < n; ++j) out[g[i] * _P + g[j]] += scale[i] * scale[j] * h.H[i * n + j];
            }
        }
        if (!allFinite(out)) return false;
        H = std::move(out);
        return true;
    }

    FitResult& finish(FitResult& res, std::vector<double> const& params, double chi2, double obj, int iter,
                      FitStatus status, std::string const& msg, NormalEquations const* last = nullptr,
                      std::vector<double> const* lastFluxes = nullptr) const {
        res.params = params;
        res.chi2 = chi2;
        res.objective = obj;
        res.nIter = iter;
        res.nEval = _nEval;
        res.status = status;
        res.message = msg;
        // _cur is at the nonlinear parameters of `params` (a pass there filled it or it is empty).
        if (status != FitStatus::NonFinite && status != FitStatus::Error) {
            res.fluxImages = std::move(_cur.images);
        }
        if (last && rescaledFisher(params, res.fisher)) {
            // The last pass's bands, rescaled to the final fluxes: exact, and no pass over the pixels.
        } else if (reusable(last, lastFluxes, params)) {
            res.fisher = last->H;
        } else if (allFinite(params)) {
            try {
                NormalEquations ne = sceneNormalEquations(_scene, params, _bands, {});
                res.fisher = ne.H;
            } catch (InputError const& e) {
                res.fisher.assign(static_cast<std::size_t>(_P) * _P, std::numeric_limits<double>::quiet_NaN());
                res.message += std::string("; Fisher matrix failed: ") + e.what();
            }
        } else {
            res.fisher.assign(static_cast<std::size_t>(_P) * _P, std::numeric_limits<double>::quiet_NaN());
        }
        return res;
    }

    Scene const& _scene;
    std::vector<BandData> const& _bands;
    FitOptions const& _opt;
    StopCheck const& _stop;
    int _P;
    mutable int _nEval = 0;
    // What the passes at the current point and at the trial point left (flux images, per-band equations).
    mutable PassProducts _cur, _trial;
    // Per (source, band): the source's flux parameter in the band (-1: none); _unitStart: every source has
    // exactly one, free (see unitStart).
    std::vector<int> _sourceFlux;
    bool _unitStart = false;
    std::vector<int> _nl, _fluxes;
    std::vector<char> _signed;  // per entry of _fluxes: a sky level (linear, either sign)
    std::vector<Bounds> _bounds;
    std::vector<double> _prec;
};

}  // namespace

std::vector<double> nnlsGram(std::vector<double> const& G, std::vector<double> const& b, int n) {
    // Lawson-Hanson active set on the normal equations.
    std::vector<double> x(n, 0.0);
    std::vector<char> passive(n, 0), usable(n, 1);
    double maxD = 0.0, maxB = 0.0;
    for (int a = 0; a < n; ++a) {
        maxD = std::max(maxD, G[a * n + a]);
        maxB = std::max(maxB, std::abs(b[a]));
    }
    for (int a = 0; a < n; ++a) usable[a] = G[a * n + a] > 1e-14 * maxD;
    double tol = 1e-13 * std::max(maxB, 1e-300);
    auto gradient = [&](std::vector<double>& w) {
        for (int a = 0; a < n; ++a) {
            double s = b[a];
            for (int c = 0; c < n; ++c) s -= G[a * n + c] * x[c];
            w[a] = s;
        }
    };
    std::vector<double> w(n);
    for (int outer = 0; outer < 3 * n + 10; ++outer) {
        gradient(w);
        int j = -1;
        double best = tol;
        for (int a = 0; a < n; ++a) {
            if (!passive[a] && usable[a] && w[a] > best) {
                best = w[a];
                j = a;
            }
        }
        if (j < 0) break;
        passive[j] = 1;
        for (int inner = 0; inner < 3 * n + 10; ++inner) {
            std::vector<int> idx;
            for (int a = 0; a < n; ++a) {
                if (passive[a]) idx.push_back(a);
            }
            int m = static_cast<int>(idx.size());
            std::vector<double> A = subMatrix(G, n, idx, idx);
            std::vector<double> z(m);
            for (int a = 0; a < m; ++a) z[a] = b[idx[a]];
            if (!cholesky(A, m)) {
                // Collinear with the passive set: this column cannot enter.
                passive[j] = 0;
                usable[j] = 0;
                break;
            }
            choleskySolve(A, m, z.data());
            bool allPos = true;
            for (int a = 0; a < m; ++a) allPos = allPos && z[a] > 0.0;
            if (allPos) {
                for (int a = 0; a < m; ++a) x[idx[a]] = z[a];
                break;
            }
            // Step towards z until the first passive variable reaches zero; it leaves the passive set.
            double alpha = 1.0;
            int hit = -1;
            for (int a = 0; a < m; ++a) {
                if (z[a] <= 0.0) {
                    double xa = x[idx[a]];
                    double t = xa / (xa - z[a]);
                    if (t < alpha || hit < 0) {
                        alpha = std::min(alpha, t);
                        hit = a;
                    }
                }
            }
            if (hit < 0) {
                // z is not finite (an ill-conditioned or overflowing system): this column cannot enter.
                passive[j] = 0;
                usable[j] = 0;
                x[j] = 0.0;
                break;
            }
            for (int a = 0; a < m; ++a) x[idx[a]] += alpha * (z[a] - x[idx[a]]);
            x[idx[hit]] = 0.0;
            for (int a = 0; a < m; ++a) {
                if (x[idx[a]] <= 0.0) {
                    x[idx[a]] = 0.0;
                    passive[idx[a]] = 0;
                }
            }
        }
    }
    return x;
}

void validateOptions(FitOptions const& o, bool crossField) {
    auto fail = [](const char* field, const char* range, double value) {
        std::ostringstream os;
        os << "FitOptions." << field << " must be " << range << " (got " << value << ")";
        throw InputError(os.str());
    };
    if (!(o.maxIter >= 0 && o.maxIter <= kMaxIterLimit)) fail("max_iter", "an integer in [0, 1000000]", o.maxIter);
    if (!(o.maxEval >= 1 && o.maxEval <= kMaxEvalLimit)) fail("max_eval", "an integer in [1, 10000000]", o.maxEval);
    if (!(std::isfinite(o.ftol) && o.ftol >= 0.0)) fail("ftol", "finite and >= 0", o.ftol);
    if (!(std::isfinite(o.xtol) && o.xtol >= 0.0)) fail("xtol", "finite and >= 0", o.xtol);
    if (!(o.lambda0 >= kMinLambda0 && o.lambda0 <= kMaxLambda0)) fail("lambda0", "in [1e-10, 1e10]", o.lambda0);
    if (!(std::isfinite(o.nMin) && o.nMin > 0.0)) fail("n_min", "finite and > 0", o.nMin);
    if (!(std::isfinite(o.nMax) && o.nMax > 0.0)) fail("n_max", "finite and > 0", o.nMax);
    if (crossField && !(o.nMax > o.nMin)) fail("n_max", "greater than n_min", o.nMax);
    auto noNaN = [&](std::vector<double> const& v, const char* field, bool finite) {
        for (double x : v) {
            if (std::isnan(x) || (finite && !std::isfinite(x))) fail(field, finite ? "finite" : "not NaN", x);
        }
    };
    noNaN(o.priorMean, "prior_mean", true);
    noNaN(o.priorSigma, "prior_sigma", false);
    noNaN(o.lower, "lower", false);
    noNaN(o.upper, "upper", false);
}

FitResult fitScene(Scene const& scene, std::vector<BandInput> const& bands, std::vector<double> const& params0,
                   std::vector<char> const& free, FitOptions const& options, StopCheck const& stop) {
    auto start = std::chrono::steady_clock::now();
    auto elapsed = [&]() {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    FitResult res;
    try {
        validateOptions(options);
        if (static_cast<int>(bands.size()) != scene.nBands()) throw InputError("need one band input per band");
        std::vector<BandData> data;
        data.reserve(bands.size());
        for (auto const& b : bands) data.emplace_back(b.ref, b.psfs);
        int nPix = 0;
        for (auto const& d : data) nPix += static_cast<int>(d.image.nPixels());
        if (nPix == 0) throw InputError("no pixel has non-zero weight");
        SceneFitter fitter(scene, data, free, options, stop);
        res = fitter.run(params0);
        res.seconds = elapsed();
        return res;
    } catch (std::exception const& e) {
        res.status = FitStatus::Error;
        res.message = e.what();
        res.params = params0;
        res.chi2 = res.objective = std::numeric_limits<double>::quiet_NaN();
        int P = scene.nParams();
        res.fisher.assign(static_cast<std::size_t>(P) * P, std::numeric_limits<double>::quiet_NaN());
        res.priorPrecision.assign(P, 0.0);
        res.seconds = elapsed();
    }
    return res;
}

std::vector<FitResult> fitBatch(std::vector<FitProblem> const& problems, int nThreads, StopCheck const& stop) {
    std::vector<FitResult> results(problems.size());
    std::atomic<bool> stopped{false};
    // Workers only read the flag; the calling thread also polls `stop` (which may need the caller's
    // context, e.g. the Python main thread for signals) and raises the flag.
    StopCheck workerStop = [&]() { return stopped.load(std::memory_order_relaxed); };
    StopCheck callerStop = [&]() {
        if (stopped.load(std::memory_order_relaxed)) return true;
        if (stop && stop()) stopped.store(true);
        return stopped.load(std::memory_order_relaxed);
    };
    std::atomic<std::size_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable allDone;
    auto work = [&](std::size_t i, StopCheck const& check) {
        auto const& p = problems[i];
        if (!p.scene) {
            results[i].status = FitStatus::Error;
            results[i].message = "problem without a scene";
        } else if (check()) {
            results[i].status = FitStatus::Error;
            results[i].message = "interrupted";
        } else {
            results[i] = fitScene(*p.scene, p.bands, p.params0, p.free, p.options, check);
        }
        if (++done == problems.size()) {
            std::lock_guard<std::mutex> lock(mutex);
            allDone.notify_all();
        }
    };
    auto loop = [&](StopCheck const& check) {
        for (std::size_t i = next++; i < problems.size(); i = next++) work(i, check);
    };
    if (nThreads <= 0) nThreads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    nThreads = static_cast<int>(std::min<std::size_t>(nThreads, std::max<std::size_t>(problems.size(), 1)));
    // Joins the workers however this function is left (a joinable std::thread must not be destroyed).
    struct Joiner {
        std::vector<std::thread> threads;
        ~Joiner() {
            for (auto& t : threads) t.join();
        }
    } joiner;
    auto& threads = joiner.threads;
    threads.reserve(nThreads > 1 ? nThreads - 1 : 0);
    for (int t = 1; t < nThreads; ++t) {
        try {
            threads.emplace_back(loop, workerStop);
        } catch (std::system_error const&) {
            break;  // no more threads (process or memory limit): the ones running share the work
        }
    }
    loop(callerStop);
    // Long fits may still run on the workers: keep polling so that an interrupt reaches them.
    {
        std::unique_lock<std::mutex> lock(mutex);
        while (done.load() < problems.size()) {
            allDone.wait_for(lock, std::chrono::milliseconds(50));
            if (done.load() < problems.size()) {
                lock.unlock();
                callerStop();
                lock.lock();
            }
        }
    }
    return results;
}

FitOptions psfFitDefaults() {
    FitOptions o;
    o.ftol = 1e-6;
    o.xtol = 1e-3;
    return o;
}

PsfFitResult fitPsf(ImageRef const& image, int nGauss, FitOptions const& options, StopCheck const& stop) {
    PsfFitResult out;
    try {
        if (nGauss < 1 || nGauss > 4) throw InputError("fitPsf: nGauss must be 1..4");
        if (image.sigmaInv) throw InputError("fitPsf: the PSF fit uses uniform weights; pass no inverse sigma");
        PreparedImage checked(image);  // finite values
        // Centroid and flux of the positive part of the kernel for the starting point.
        double s0 = 0.0, sx = 0.0, sy = 0.0;
        std::vector<double> row(image.nx);
        auto load = [&](std::ptrdiff_t y) {
            for (std::ptrdiff_t x = 0; x < image.nx; ++x) {
                double v = image.dtype == DType::F32
                                   ? static_cast<double>(static_cast<float const*>(image.data)[y * image.rowStride + x])
                                   : static_cast<double const*>(image.data)[y * image.rowStride + x];
                row[x] = std::max(v, 0.0);
            }
        };
        for (std::ptrdiff_t y = 0; y < image.ny; ++y) {
            load(y);
            for (std::ptrdiff_t x = 0; x < image.nx; ++x) {
                s0 += row[x];
                sx += row[x] * (image.x0 + x);
                sy += row[x] * (image.y0 + y);
            }
        }
        if (!(s0 > 0.0)) throw InputError("fitPsf: the kernel image has no positive flux");
        double cx = sx / s0, cy = sy / s0;
        // Size scale from the peak (the sigma of a Gaussian with the kernel's flux and peak): unlike the
        // second moments it is not inflated by the wings. Round start: on Moffat kernels it found the best
        // minimum more often than the moment ellipse did.
        double peak = 0.0;
        for (std::ptrdiff_t y = 0; y < image.ny; ++y) {
            load(y);
            for (std::ptrdiff_t x = 0; x < image.nx; ++x) peak = std::max(peak, row[x]);
        }
        double a = std::sqrt(s0 / (2.0 * M_PI * peak));
        // Starting sizes in units of the peak sigma (chosen on Moffat kernels: fewest iterations, best chi2).
        static const double factors[4][4] = {{1.0}, {0.8, 1.8}, {0.7, 1.3, 2.6}, {0.6, 1.0, 1.8, 3.6}};
        // One source whose N single-Gaussian components share the centre: fewer degeneracies than free
        // centres, and kernel images are centred by construction.
        auto profile = std::make_shared<FixedProfile>(std::vector<double>{1.0}, std::vector<double>{1.0});
        Source source;
        std::vector<double> params{cx, cy};
        for (int k = 0; k < nGauss; ++k) {
            source.components.push_back(Component{profile, "g"});
            params.insert(params.end(), {std::log(a * factors[nGauss - 1][k]), 0.0, 0.0});
        }
        for (int k = 0; k < nGauss; ++k) params.push_back(1.0 / nGauss);
        Scene scene({source}, 1);
        BandInput band{image, {Mixture{Gaussian{1.0, 0.0, 0.0, 0.0, 0.0, 0.0}}}};
        FitOptions opt = options;
        opt.priorMean.clear();
        opt.priorSigma.clear();
        FitResult res = fitScene(scene, {band}, params, {}, opt, stop);
        out.status = res.status;
        out.message = res.message;
        out.nIter = res.nIter;
        out.chi2 = res.chi2;
        if (res.status == FitStatus::Error) return out;
        double total = 0.0;
        for (int k = 0; k < nGauss; ++k) total += res.params[scene.fluxIndex(0, k, 0)];
        if (!(total > 0.0)) {
            out.status = FitStatus::Error;
            out.message = "fitPsf: fitted mixture has no flux";
            return out;
        }
        out.flux = total;
        for (int k = 0; k < nGauss; ++k) {
            int o = 2 + 3 * k;
            double S[3], d1[3], d2[3];
            shapeMatrix(res.params[o + 1], res.params[o + 2], S, d1, d2);
            double r2 = std::exp(2.0 * res.params[o]);
            out.gaussians.push_back({res.params[scene.fluxIndex(0, k, 0)] / total, res.params[0], res.params[1],
                                     r2 * S[0], r2 * S[1], r2 * S[2]});
        }
    } catch (std::exception const& e) {
        out.status = FitStatus::Error;
        out.message = e.what();
    }
    return out;
}

}  // namespace galmix
}  // namespace lsst
