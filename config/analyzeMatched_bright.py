# Metrics restricted to bright objects (summary range 18-22 mag, bins 16-24).
# Use with: pipetask run ... -C analyzeMatched:$PKG/config/analyzeMatched_bright.py
config.analysis.mag_min = 16.0
config.analysis.mag_max = 24.0
config.analysis.summary_min = 18.0
config.analysis.summary_max = 22.0
