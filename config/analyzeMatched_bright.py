# Metrics restricted to bright objects (summary range 18-22 mag, bins 16-24).
# Use with: pipetask run ... -C analyzeMatched:$PKG/config/analyzeMatched_bright.py
config.magMin = 16.0
config.magMax = 24.0
config.summaryMin = 18.0
config.summaryMax = 22.0
