// Levenberg-Marquardt with fluxes solved exactly (variable projection), batch fitting, PSF-mixture fits.
#ifndef LSST_GALMIX_OPTIMIZE_H
#define LSST_GALMIX_OPTIMIZE_H

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lsst/galmix/model.h"

namespace lsst {
namespace galmix {

struct FitOptions {
    int maxIter = 100;        // Gauss-Newton / LM iterations (outer steps)
    int maxEval = 1000;       // passes over the pixels (trial points) in all: bounds the damping loop too
    double ftol = 1e-10;      // converged when the relative decrease of the objective is below this
    double xtol = 1e-4;       // ... or every step is below xtol times the parameter's error
    double lambda0 = 1.0;     // initial Marquardt damping (relative to diag(H)): starts from moments are
                              // far, and 1 wasted fewer trial passes than 1e-3 or 0.1 (doc/engine.rst)
    double nMin = 0.5;        // bounds of Sersic indices (trial points projected onto them)
    double nMax = 6.0;
    bool nonNegativeFluxes = true;
    /// Gaussian priors, per parameter (size nParams, or empty for none); sigma <= 0 or inf means no
    /// prior. Priors on flux parameters are ignored (fluxes are solved linearly).
    std::vector<double> priorMean, priorSigma;
    /// Optional bounds per parameter (size nParams, or empty): where both are finite and lower < upper,
    /// the parameter is kept in [lower, upper] (trial points projected; held at a bound the gradient
    /// pushes against); this overrides
    /// [nMin, nMax] for Sersic indices. Ignored for fluxes (non-negativity is nonNegativeFluxes).
    std::vector<double> lower, upper;
    /// Return FitResult::fluxImages: the unit-flux models of the fit's last pass over the pixels.
    bool fluxImages = false;
    /// The free fluxes of params0 are a starting point (a previous fit's): the first pass linearises at
    /// them instead of a pass solving the fluxes first (one pass fewer). Ignored when no source flux of
    /// params0 is positive, and where every source has one component (its first pass, at unit fluxes,
    /// solves them anyway).
    bool startFluxes = false;
};

/// Throws InputError naming the first invalid field and its allowed range. With crossField false the
/// conditions between fields (n_min < n_max) are skipped: the Python bindings check each assignment that
/// way; fitScene checks everything before it starts.
void validateOptions(FitOptions const& options, bool crossField = true);

/// Polled by the optimizer between trial points (and by fitBatch between problems); returning true stops
/// the fit with status Error and message "interrupted". Lets the bindings honour Ctrl-C.
using StopCheck = std::function<bool()>;

enum class FitStatus { Converged = 0, MaxIter = 1, Singular = 2, NonFinite = 3, Error = 4 };

struct FitResult {
    std::vector<double> params;   // best-fit parameters (global layout, fluxes included)
    double chi2 = 0.0;            // data chi2 at the best fit
    double objective = 0.0;       // chi2 + prior terms
    int nIter = 0;
    int nEval = 0;                // passes over the pixels (normal equations or chi2 evaluations)
    int nPix = 0;                 // weighted pixels summed over bands
    FitStatus status = FitStatus::Error;
    std::string message;
    std::vector<double> fisher;   // J^T W J (P x P, all parameters, natural units) at the best fit
    std::vector<double> priorPrecision;  // 1/sigma^2 of the prior on each parameter (0 = none)
    double seconds = 0.0;         // wall-clock time of this fit (input checks, optimisation, Fisher matrix)
    /// With FitOptions::fluxImages, per band the unit-flux models of the free source fluxes at the returned
    /// nonlinear parameters,
    /// written by the pass over the pixels that evaluated them (so the fitted model costs no further pass:
    /// sum_j params[columns[j]] pixels[j]); empty when no pass evaluated them (a failed start).
    std::vector<FluxImages> fluxImages;
};

/// A band's inputs before checking: image (+ inverse sigma) and PSF mixtures (one, or one per source).
struct BandInput {
    ImageRef ref;
    std::vector<Mixture> psfs;
};

struct FitProblem {
    std::shared_ptr<const Scene> scene;
    std::vector<BandInput> bands;
    std::vector<double> params0;
    std::vector<char> free;  // empty = all free
    FitOptions options;
};

/// Fit one scene; bad inputs give status Error with a message (never throws for data problems).
FitResult fitScene(Scene const& scene, std::vector<BandInput> const& bands, std::vector<double> const& params0,
                   std::vector<char> const& free, FitOptions const& options, StopCheck const& stop = {});

/// Fit many independent problems, optionally on nThreads threads (<= 0: hardware concurrency). The calling
/// thread fits problems too; if a worker thread cannot be created the batch runs on the threads that could
/// (at least the calling one). `stop` is called from the calling thread only (at least every ~50 ms while
/// fits run); once it returns true the remaining fits stop with status Error ("interrupted").
std::vector<FitResult> fitBatch(std::vector<FitProblem> const& problems, int nThreads, StopCheck const& stop = {});

/// Non-negative least squares in Gram form: minimise x^T G x - 2 b^T x subject to x >= 0.
std::vector<double> nnlsGram(std::vector<double> const& G, std::vector<double> const& b, int n);

struct PsfFitResult {
    Mixture gaussians;            // fluxes are fractions (sum 1); centres in the image's pixel frame
    double flux = 0.0;            // total flux of the fitted mixture before normalisation
    double chi2 = 0.0;            // sum of squared residuals (uniform unit weights)
    int nIter = 0;
    FitStatus status = FitStatus::Error;
    std::string message;
};

/// Fit nGauss (1..4) concentric Gaussians (shared free centre; free shapes; non-negative fluxes) to a PSF
/// kernel image with uniform weights (every pixel weight 1: the kernel image is noiseless).
PsfFitResult fitPsf(ImageRef const& image, int nGauss, FitOptions const& options, StopCheck const& stop = {});

/// Defaults for fitPsf: ftol 1e-6 and xtol 1e-3 (a kernel's mixture needs no more; see doc/engine.rst).
FitOptions psfFitDefaults();

}  // namespace galmix
}  // namespace lsst

#endif
