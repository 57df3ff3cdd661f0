"""Task configs translate into the library's settings and reject impossible combinations."""

import lsst.pex.config as pexConfig
import pytest
from lsst.galmix.tasks import AnalyzeMatchedConfig, ConsolidateTractConfig, FitCoaddMultibandConfig


def test_fit_model_name_and_validation():
    config = FitCoaddMultibandConfig()
    assert config.modelName == "sersic"
    config.addPointSource, config.fixCentroid = True, True
    assert config.modelName == "ptsersicFixedCen"
    config.validate()
    config.model = "gauss"  # no point + Gaussian model in the registry
    with pytest.raises(pexConfig.FieldValidationError, match="not in the registry"):
        config.validate()
    config = FitCoaddMultibandConfig()
    config.model = "sersicFixedCen"
    with pytest.raises(pexConfig.FieldValidationError, match="fixCentroid"):
        config.validate()


def test_fit_config_translation():
    config = FitCoaddMultibandConfig()
    config.blendMode, config.maxChildren, config.maxIter, config.nThreads = "subtract", 3, 17, 2
    config.priorN, config.priorEtaSigma = [1.5, 1.0], 0.3
    config.validate()
    lib = config.fit_config(pixel_scale=0.168)
    assert (lib.pixel_scale, lib.blend_mode, lib.max_children, lib.n_threads) == (0.168, "subtract", 3, 2)
    assert lib.settings.max_iter == 17
    assert lib.settings.priors.n == (1.5, 1.0) and lib.settings.priors.eta_sigma == 0.3
    assert FitCoaddMultibandConfig().fit_config(0.2).settings.priors.n is None
    config.priorN = [1.5, 0.0]
    with pytest.raises(pexConfig.FieldValidationError, match="sigma"):
        config.validate()


def test_tract_configs_validate():
    config = ConsolidateTractConfig()
    config.models = ["sersic", "sersic"]
    with pytest.raises(pexConfig.FieldValidationError, match="Repeated"):
        config.validate()
    config = AnalyzeMatchedConfig()
    config.bands = ["g", "i"]
    with pytest.raises(pexConfig.FieldValidationError, match="selectionBand"):
        config.validate()
    config.model = "nosuchmodel"
    with pytest.raises(KeyError, match="known models"):
        config.validate()
