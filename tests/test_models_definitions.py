"""The model registry and the output schema derived from it."""

import numpy as np
import pytest
from lsst.galmix.models.definitions import MODELS, get_model
from lsst.galmix.schema import (
    PSF_FLAGS,
    SOURCE_FLAGS,
    FlagSet,
    empty_psf_table,
    empty_source_table,
    source_columns,
)


def test_registry_has_all_models_with_fixed_centroid_variants():
    base = ["point", "gauss", "exp", "dev", "sersic", "expdev", "ptsersic", "sersicexp"]
    assert sorted(MODELS) == sorted(base + [b + "FixedCen" for b in base])
    assert get_model("sersic").nonlinear_names == ("x", "y", "sersic.ln_reff", "sersic.eta1", "sersic.eta2",
                                                    "sersic.n")
    assert get_model("expdevFixedCen").nonlinear_names == (
        "exp.ln_reff", "exp.eta1", "exp.eta2", "dev.ln_reff", "dev.eta1", "dev.eta2")
    assert get_model("point").nonlinear_names == ("x", "y")
    assert get_model("pointFixedCen").n_nonlinear == 0
    with pytest.raises(KeyError, match="known models"):
        get_model("nosuch")


def test_single_component_columns_follow_conventions():
    names = [c.name for c in source_columns("sersic", ["g", "r"])]
    for col in ["objectId", "parentObjectId", "patch", "detect_isPrimary", "g_sersicFlux", "g_sersicFluxErr",
                "r_sersicFlux", "sersic_reff", "sersic_reffPix", "sersic_reffErr", "sersic_q", "sersic_qErr",
                "sersic_pa", "sersic_index", "sersic_indexErr", "sersic_ra", "sersic_dec", "sersic_x", "sersic_y",
                "sersic_xErr", "sersic_yErr", "sersic_chisq_reduced", "sersic_n_pix", "sersic_n_iter",
                "sersic_n_eval_jac", "sersic_reff_x", "sersic_reff_y", "sersic_rho", "sersic_rhoErr",
                "sersic_raErr", "sersic_decErr", "sersic_flag", "sersic_unknown_flag", "sersic_no_data_flag",
                "sersic_shape_unconstrained_flag"]:
        assert col in names
    assert len(names) == len(set(names))
    # Fixed-index profiles report no n.
    assert "exp_index" not in [c.name for c in source_columns("exp", ["r"])]
    # Per-object timing is task metadata, not a table column (re-runs give identical tables).
    assert not any("time" in n for n in names)


def test_two_component_columns_carry_component_prefix():
    names = [c.name for c in source_columns("expdev", ["i"])]
    for col in ["i_expdevFlux", "i_expdev_expFlux", "i_expdev_devFlux", "i_expdev_devFluxErr",
                "expdev_exp_reff", "expdev_dev_reff", "expdev_dev_q", "expdev_x"]:
        assert col in names
    pts = [c.name for c in source_columns("ptsersic", ["i"])]
    assert "ptsersic_sersic_index" in pts and "i_ptsersic_ptFlux" in pts and "ptsersic_pt_reff" not in pts


def test_every_column_has_description_unit_and_flags_are_complete():
    table = empty_source_table("expdev", ["g", "r", "i"], 3)
    for col in table.columns.values():
        assert col.description
    assert table["expdev_exp_reff"].unit == "arcsec"
    assert table["g_expdevFlux"].unit == "nJy"
    assert np.isnan(table["g_expdevFlux"]).all() and not table["expdev_flag"].any()
    flag_cols = [c for c in table.colnames if c.startswith("expdev_") and c.endswith("_flag") and c != "expdev_flag"]
    assert flag_cols == [f"expdev_{f.column or f.name}_flag" for f in SOURCE_FLAGS]
    psf = empty_psf_table(3, 2)
    assert "psf_g2_xy" in psf.colnames and "psf_g3_xy" not in psf.colnames
    psf_flags = [c for c in psf.colnames if c.startswith("psf_") and c.endswith("_flag") and c != "psf_flag"]
    assert psf_flags == [f"psf_{f.name}_flag" for f in PSF_FLAGS]


def test_flagset_fatal_summary():
    fs = FlagSet()
    fs.set("edge")
    assert not fs.fatal and fs.names() == ["edge"]
    fs.set("no_convergence")
    assert fs.fatal
    fs.set("no_convergence", False)
    assert not fs.fatal
