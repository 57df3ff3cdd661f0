"""Task configs hold the library's settings and reject impossible combinations."""

import lsst.pex.config as pexConfig
import pytest
from lsst.galmix.fitting.config import SourceFitConfig
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


def test_fit_settings_are_the_library_config():
    config = FitCoaddMultibandConfig()
    config.fit.blend_mode, config.fit.max_children, config.fit.n_threads = "subtract", 3, 2
    config.fit.settings.max_iter = 17
    config.fit.settings.priors.n, config.fit.settings.priors.eta_sigma = [1.5, 1.0], 0.3
    config.validate()
    assert isinstance(config.fit, SourceFitConfig)
    assert config.fit.settings.priors.n == [1.5, 1.0] and config.fit.settings.priors.eta_sigma == 0.3
    assert FitCoaddMultibandConfig().fit.settings.priors.n is None
    config.fit.settings.priors.n = [1.5, 0.0]
    with pytest.raises(pexConfig.FieldValidationError, match="sigma"):
        config.validate()
    config = FitCoaddMultibandConfig()
    config.fit.stamp_min, config.fit.stamp_max = 20, 10
    with pytest.raises(pexConfig.FieldValidationError, match="stamp_min"):
        config.validate()


def test_tract_configs_validate():
    config = ConsolidateTractConfig()
    config.models = ["sersic", "sersic"]
    with pytest.raises(pexConfig.FieldValidationError, match="Repeated"):
        config.validate()
    config = AnalyzeMatchedConfig()
    config.analysis.bands = ["g", "i"]
    with pytest.raises(pexConfig.FieldValidationError, match="selection_band"):
        config.validate()
    config.analysis.model = "nosuchmodel"
    with pytest.raises(KeyError, match="known models"):
        config.validate()
