# Faster, coarser multi-band fits for quick looks: blends by neighbour subtraction, fewer iterations,
# smaller stamps, two threads per quantum. Use with: pipetask run ... -C fitCoaddMultibandSersic:$PKG/config/fitCoaddMultiband_fast.py
config.fit.blend_mode = "subtract"
config.fit.settings.max_iter = 40
config.fit.stamp_sigmas = 4.0
config.fit.stamp_max = 40
config.fit.n_threads = 2
