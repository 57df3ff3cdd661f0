"""An independent numpy implementation of galmix's model and fitter, for tests only.

The package renders, fits and rebuilds every model through the C++ scene (`lsst.galmix.engine` via
`lsst.galmix.fitting.engine_backend`). This package computes the same things a second way, so that tests
can compare the engine against it:

- `reference.render`: the parameter map from model parameters to PSF-convolved Gaussians (its own copy
  of the shape-to-covariance formula, differentiated by central differences) and their analytic pixel
  evaluation;
- `reference.optimize`: Levenberg-Marquardt with the fluxes projected out (variable projection), the
  Fisher matrix from the numpy model derivatives, and the same box bounds, priors and conditional errors
  (`lsst.galmix.fitting.optimize.ParameterBounds`, `lsst.galmix.fitting.errors`) as the package.

It shares the package's inputs and outputs (`lsst.galmix.fitting.optimize.SourceSpec`, ``BandInput``,
``SceneFit``, ``FitSettings``) and nothing of the engine. It fits no sky.
"""
