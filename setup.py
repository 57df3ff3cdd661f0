"""Declares the pybind11 extension only; all metadata is in pyproject.toml.

The default build is portable (x86-64 baseline); src/kernels.cc compiles the hot loops for the
baseline, AVX2+FMA and AVX-512, chosen at import from the CPU or GALMIX_ISA (see
include/lsst/galmix/simd.h). ``GALMIX_MARCH=native pip install -e .`` builds the rest of the library
for the host CPU as well.
"""

import glob
import os

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

# -fopenmp-simd: honour `#pragma omp simd reduction` in the kernels (no OpenMP runtime is linked).
compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fvisibility=hidden", "-fopenmp-simd"]
march = os.environ.get("GALMIX_MARCH")
if march:
    compile_args.append(f"-march={march}")

ext = Pybind11Extension(
    "lsst.galmix._galmix",
    sorted(glob.glob("src/*.cc") + glob.glob("python/lsst/galmix/*.cc")),
    # Headers and the per-instruction-set kernel body: a change to any of them rebuilds the extension.
    depends=sorted(glob.glob("src/*.h") + glob.glob("src/*.inc") + glob.glob("include/lsst/galmix/*.h")
                   + glob.glob("python/lsst/galmix/*.h")),
    include_dirs=["include"],
    cxx_std=17,
    extra_compile_args=compile_args,
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
