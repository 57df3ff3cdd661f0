// Shared helpers of the pybind11 binding translation units.
#ifndef LSST_GALMIX_BINDINGS_COMMON_H
#define LSST_GALMIX_BINDINGS_COMMON_H

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "lsst/galmix/evaluate.h"
#include "lsst/galmix/mixture.h"

namespace lsst {
namespace galmix {
namespace bind {

namespace py = pybind11;

DType dtypeOf(py::array const& a, const char* what);
/// `a` itself if it is native-endian float32/float64 (no copy); a native copy of a byte-swapped float array
/// (e.g. read from FITS); anything else is returned unchanged (and rejected later by dtypeOf).
py::array nativeFloat(py::array const& a);
std::optional<py::array> nativeFloat(std::optional<py::array> const& a);
void check2d(py::array const& a, const char* what);
ImageRef imageRef(py::array const& data, std::optional<py::array> const& sigmaInv, double x0, double y0);
/// A checked (2-d, writeable, contiguous along x) view of an output image whose [0, 0] is at (x0, y0).
OutImageRef outImageRef(py::array& out, double x0, double y0);
Mixture mixtureFromArray(py::array_t<double, py::array::c_style | py::array::forcecast> const& a);
/// mixtureFromArray with every Gaussian checked for safe evaluation (checkGaussian).
Mixture checkedMixture(py::array_t<double, py::array::c_style | py::array::forcecast> const& a);
/// `a` if its data are aligned for its dtype, else an aligned copy (unaligned loads are undefined behaviour).
py::array aligned(py::array const& a);
template <typename T, int F>
py::array_t<T, F> aligned(py::array_t<T, F> const& a) {
    if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) == 0) return a;
    return py::array_t<T, F>(a.attr("copy")());
}
/// Throws InputError unless a pixel-coordinate origin is finite.
void checkOrigin(double x0, double y0);
/// Throws InputError if a float output image holds non-finite values (the model overflowed).
void checkFiniteOutput(py::array const& out);

/// Polls for Python signals (Ctrl-C) from a thread that released the GIL: at most every 50 ms it takes
/// the GIL and runs the signal handlers. A raised exception stays set in the calling thread; call
/// rethrow() once the GIL is held again. Use from the thread that called into C++ only.
class SignalPoll {
public:
    bool operator()();
    /// Throws error_already_set if a handler raised (GIL must be held).
    void rethrow() const;

private:
    std::chrono::steady_clock::time_point _last = std::chrono::steady_clock::now();
    bool _raised = false;
};
py::array_t<double> mixtureToArray(Mixture const& m);
py::array_t<double> matrixToArray(std::vector<double> const& v, py::ssize_t n);
py::array_t<double> vectorToArray(std::vector<double> const& v);

void bindModel(py::module_& m);
void bindOptimize(py::module_& m);

}  // namespace bind
}  // namespace galmix
}  // namespace lsst

#endif
