// The hot loops compiled once per x86-64 instruction set (baseline SSE2, AVX2+FMA, AVX-512) in one
// build, and the choice among them: the best one the CPU runs, or the one GALMIX_ISA / setIsa names.
// GCC target_clones would pick a clone by ifunc at load time and cannot be overridden; explicit copies
// behind a table of function pointers let one machine test and benchmark every path.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "lsst/galmix/simd.h"

// Block vectors never cross an ABI boundary (all kernels are internal), so the vector-ABI note is noise.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace lsst {
namespace galmix {
namespace detail {
namespace {

// A Gaussian is skipped where its exponent is below -kCut, i.e. beyond sqrt(2 kCut) = 8.9 sigma along
// its own metric: the terms dropped are below exp(-40) = 4e-18 of that Gaussian's peak, under double
// precision (2^-53 = 1.1e-16) of the peak by a factor 26, so images, chi2 and derivatives are unchanged
// at double precision relative to the peak.
constexpr double kCut = 40.0;
// The normal equations of a fit use a tighter cut, exp(-25) = 1.4e-11 of each Gaussian's peak (7.1 sigma):
// the flux a Gaussian loses there is 1.4e-11 of its own, and chi2 changes by far less than any step the
// optimizer takes, while the evaluated area shrinks by (7.1 / 8.9)^2 = 0.63 for compact Gaussians.
constexpr double kCutFit = 25.0;

// The baseline kernels take the build's flags: SSE2 in the default build, the host's instruction sets
// with GALMIX_MARCH=native (then still 2-double blocks).
namespace isa_baseline {
#define GALMIX_KLANES 2
// Two 2-double registers per step: 2-5% faster than one on the 24^2 and 40^2 stamps of fits.
#define GALMIX_KUNROLL 2
#define GALMIX_KUNROLL_LONG 2
#define GALMIX_KNAME "baseline"
#if defined(__AVX2__)
#define GALMIX_KDESC "the build's -march (GALMIX_MARCH)"
#else
#define GALMIX_KDESC "x86-64 baseline (SSE2)"
#endif
#include "kernels_impl.inc"
#undef GALMIX_KLANES
#undef GALMIX_KUNROLL
#undef GALMIX_KUNROLL_LONG
#undef GALMIX_KNAME
#undef GALMIX_KDESC
}  // namespace isa_baseline

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GALMIX_HAVE_X86_ISAS 1
// Instruction-set lists rather than arch=x86-64-v3/v4: functions compiled for a different -march cannot
// inline the (baseline) helpers of the headers, lists of extensions can.
#pragma GCC push_options
#pragma GCC target("avx,avx2,fma,bmi,bmi2,lzcnt,movbe,f16c,popcnt")
namespace isa_avx2 {
#define GALMIX_KLANES 4
// One register per step on runs shorter than kLongRun: with the group sums of the derivative groups
// (kernels.h) two registers per step spill on 16 ymm registers; one was 8-12% faster on the 16^2-32^2
// stamps of fits, the same at 48^2 and 2-3% slower at 64^2 (bench_engine.py's source with PSFs of 2 and
// 4 Gaussians; doc/engine.rst). Two on runs of 56 pixels and more: NE 1-9% faster at 64^2, 5-27% at
// 128^2, 5-8% at 256^2 (bench_engine.py).
#define GALMIX_KUNROLL 1
#define GALMIX_KUNROLL_LONG 2
#define GALMIX_KNAME "avx2"
#define GALMIX_KDESC "x86-64-v3 (AVX2+FMA)"
#include "kernels_impl.inc"
#undef GALMIX_KLANES
#undef GALMIX_KUNROLL
#undef GALMIX_KUNROLL_LONG
#undef GALMIX_KNAME
#undef GALMIX_KDESC
}  // namespace isa_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx,avx2,fma,bmi,bmi2,lzcnt,movbe,f16c,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl")
#pragma GCC target("prefer-vector-width=512")
namespace isa_avx512 {
#define GALMIX_KLANES 8
// One register per step: two were 15-20% faster on 128^2-256^2 stamps but 3-10% slower on the small
// stamps of fits (a 16-pixel step wastes more at the ends of short rows); with the derivative groups
// 16-20% slower on 24^2 and 40^2 stamps.
#define GALMIX_KUNROLL 1
#define GALMIX_KUNROLL_LONG 1
#define GALMIX_KNAME "avx512"
#define GALMIX_KDESC "x86-64-v4 (AVX-512F/BW/CD/DQ/VL+FMA)"
#include "kernels_impl.inc"
#undef GALMIX_KLANES
#undef GALMIX_KUNROLL
#undef GALMIX_KUNROLL_LONG
#undef GALMIX_KNAME
#undef GALMIX_KDESC
}  // namespace isa_avx512
#pragma GCC pop_options
#else
#define GALMIX_HAVE_X86_ISAS 0
#endif

bool cpuRuns(KernelTable const& t) {
#if GALMIX_HAVE_X86_ISAS
    __builtin_cpu_init();
    bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
              __builtin_cpu_supports("popcnt");
    if (&t == &isa_avx2::table) return v3;
    if (&t == &isa_avx512::table) {
        return v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
    }
#endif
    return &t == &isa_baseline::table;
}

// Every table in this build, fastest first.
std::vector<KernelTable const*> const& allTables() {
    static std::vector<KernelTable const*> const tables = {
#if GALMIX_HAVE_X86_ISAS
            &isa_avx512::table, &isa_avx2::table,
#endif
            &isa_baseline::table};
    return tables;
}

struct Selection {
    KernelTable const* table;
    std::string how;  // why this table was chosen
};

std::string joined(std::vector<std::string> const& v) {
    std::string s;
    for (auto const& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

Selection choose(std::string const& name, std::string const& source) {
    if (name.empty() || name == "auto") {
        for (auto t : allTables()) {
            if (cpuRuns(*t)) return {t, "the best this CPU runs"};
        }
    }
    for (auto t : allTables()) {
        if (name != t->name) continue;
        if (!cpuRuns(*t)) {
            throw std::invalid_argument(source + ": this CPU cannot run the " + name +
                                        " kernels (it runs: " + joined(supportedIsas()) + ")");
        }
        return {t, source};
    }
    std::vector<std::string> names;
    for (auto t : allTables()) names.push_back(t->name);
    throw std::invalid_argument(source + ": unknown instruction set '" + name + "' (this build has: " +
                                joined(names) + "; or auto)");
}

Selection fromEnvironment() {
    char const* env = std::getenv("GALMIX_ISA");
    std::string name = env ? env : "";
    return choose(name, name.empty() || name == "auto" ? "the best this CPU runs" : "GALMIX_ISA=" + name);
}

std::atomic<KernelTable const*> gActive{nullptr};
std::string gHow;  // written only together with gActive, under the GIL of the binding

}  // namespace

KernelTable const& activeKernels() {
    KernelTable const* t = gActive.load(std::memory_order_acquire);
    if (t) return *t;
    Selection s = fromEnvironment();
    gHow = s.how;
    gActive.store(s.table, std::memory_order_release);
    return *s.table;
}

}  // namespace detail

std::vector<std::string> supportedIsas() {
    std::vector<std::string> out;
    for (auto t : detail::allTables()) {
        if (detail::cpuRuns(*t)) out.push_back(t->name);
    }
    return out;
}

std::string activeIsa() { return detail::activeKernels().name; }

void setIsa(std::string const& name) {
    detail::Selection s = detail::choose(name, name.empty() || name == "auto" ? "the best this CPU runs"
                                                                               : "set_isa('" + name + "')");
    detail::gHow = s.how;
    detail::gActive.store(s.table, std::memory_order_release);
}

std::string dispatchInfo() {
    auto const& t = detail::activeKernels();
    std::ostringstream os;
    os << "kernels: " << t.name << " (" << t.description << ", " << t.lanes
       << " doubles per normal-equation block), chosen by " << detail::gHow
       << "; this CPU runs: " << detail::joined(supportedIsas());
    return os.str();
}

}  // namespace galmix
}  // namespace lsst
