# Fit the PSF at every object position instead of once per cell (slower; for PSFs that vary within a
# cell). Use with: pipetask run ... -C fitCoaddPsf:$PKG/config/fitCoaddPsf_perObject.py
config.mode = "object"
config.psf.n_gauss = 3
