// Small dense kernels on row-major d x d buffers shared by the distance and reduction code.
// Private to the core; the public API is cpp/include/dfmr/.
#pragma once

#include <cmath>
#include <cstddef>

namespace dfmr::detail {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// Hot loops are compiled for the x86-64 baseline and again for the listed targets, e.g.
// DFMR_TARGET_CLONES("arch=x86-64-v3", "default"); the loader picks the best clone the CPU
// supports once per process, so every call in a process runs the same instructions (results may
// differ between CPUs in the last bits, as with any BLAS). The wheel stays portable: no -march
// flag. Sanitizer builds define DFMR_NO_MULTIVERSION (the ifunc resolvers would run before the
// sanitizer runtimes are initialised).
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(DFMR_NO_MULTIVERSION)
#define DFMR_TARGET_CLONES(...) __attribute__((target_clones(__VA_ARGS__)))
#endif
// A kernel written for AVX-512 vectors (eight doubles) has its own function compiled for
// x86-64-v4, chosen at run time, once per process, where cpu_has_x86_64_v4() (the test the clones'
// resolvers make); built where the clones are, with GCC 12 or later (which names the level).
#if defined(DFMR_TARGET_CLONES) && __GNUC__ >= 12
#define DFMR_HAVE_X86_64_V4 1
#define DFMR_TARGET_X86_64_V4 __attribute__((target("arch=x86-64-v4")))
inline bool cpu_has_x86_64_v4() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("x86-64-v4");
}
#else
#define DFMR_HAVE_X86_64_V4 0
#endif
#ifndef DFMR_TARGET_CLONES
#define DFMR_TARGET_CLONES(...)
#endif

// Forces inlining: a helper of a DFMR_TARGET_CLONES function must be compiled for the clone's
// target (whether a multiply and an add are contracted into an FMA depends on it, and the
// reduction's results are specified bit for bit).
#if defined(__GNUC__)
#define DFMR_ALWAYS_INLINE __attribute__((always_inline))
#else
#define DFMR_ALWAYS_INLINE
#endif

// Dot product of two contiguous arrays; the simd pragma lets the compiler vectorise the
// reduction without -ffast-math.
inline double dot(const double* a, const double* b, std::size_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// In-place Cholesky (Cholesky-Banachiewicz) of the lower triangle of the row-major d x d
// matrix A; on success the lower triangle holds L with L L^T = A. The upper triangle is neither
// read nor written. Returns false when a pivot A_jj - sum_k L_jk^2 is not finite or not above
// rel_tol * A_jj: rel_tol = 0 asks only for positive pivots; the reduction passes 2 d eps,
// refusing pivots that are rounding noise (pivot j carries an error of about j eps A_jj), so
// that any other Cholesky implementation also factorises an accepted matrix. The one dense
// Cholesky of the core (the distance kernel factorises many small matrices at once, lane-wise).
inline bool cholesky_lower(double* A, std::size_t d, double rel_tol = 0.0) {
  for (std::size_t j = 0; j < d; ++j) {
    double* rj = A + j * d;
    const double diag = rj[j];
    const double pivot = diag - dot(rj, rj, j);
    if (!(pivot > rel_tol * diag) || !(pivot > 0.0) || !std::isfinite(pivot)) return false;
    const double ljj = std::sqrt(pivot);
    rj[j] = ljj;
    const double inv = 1.0 / ljj;
    for (std::size_t i = j + 1; i < d; ++i) {
      double* ri = A + i * d;
      ri[j] = (ri[j] - dot(ri, rj, j)) * inv;
    }
  }
  return true;
}

// Solve L z = b in place (L lower triangular, row-major d x d).
inline void forward_solve(const double* L, double* b, std::size_t d) {
  for (std::size_t i = 0; i < d; ++i) {
    const double* ri = L + i * d;
    b[i] = (b[i] - dot(ri, b, i)) / ri[i];
  }
}

// log det(L L^T) = 2 sum log L_ii.
inline double log_det_chol(const double* L, std::size_t d) {
  double s = 0.0;
  for (std::size_t i = 0; i < d; ++i) s += std::log(L[i * d + i]);
  return 2.0 * s;
}

}  // namespace dfmr::detail
