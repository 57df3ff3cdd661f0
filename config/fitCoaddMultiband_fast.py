# Faster, coarser multi-band fits for quick looks: blends by neighbour subtraction, fewer iterations,
# smaller stamps, two threads per quantum. Use with: pipetask run ... -C fitCoaddMultibandSersic:$PKG/config/fitCoaddMultiband_fast.py
config.blendMode = "subtract"
config.maxIter = 40
config.stampSigmas = 4.0
config.stampMax = 40
config.nThreads = 2
