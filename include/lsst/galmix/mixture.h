// Gaussian mixtures and their convolution.
#ifndef LSST_GALMIX_MIXTURE_H
#define LSST_GALMIX_MIXTURE_H

#include <vector>

#include "lsst/galmix/gaussian.h"

namespace lsst {
namespace galmix {

using Mixture = std::vector<Gaussian>;

/// Every source Gaussian convolved with every PSF Gaussian, source-major order (i * nPsf + j).
Mixture convolve(Mixture const& source, Mixture const& psf);

/// Sum of the fluxes.
double totalFlux(Mixture const& m);

}  // namespace galmix
}  // namespace lsst

#endif
