#include "dfmr/distance.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels.hpp"
#include "parallel.hpp"

namespace dfmr {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Gaussian overlaps are evaluated kLanes pairs at a time in structure-of-arrays layout:
// every arithmetic step runs across independent lanes, so it vectorises without
// reassociating any sum (each lane computes exactly what a scalar loop would).
constexpr std::size_t kLanes = 8;

struct LaneWork {
  std::vector<double> A, z;
  void resize(std::size_t d) {
    A.resize(d * d * kLanes);
    z.resize(d * kLanes);
  }
};

// out[l] = log N(mu_a; mu_b[l], S_a + S_b[l]) for l < kLanes. Returns false if some
// S_a + S_b[l] is not numerically positive definite.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(DFMR_NO_MULTIVERSION)
__attribute__((target_clones("avx2", "default")))
#endif
bool log_overlap_lanes(const double* mu_a, const double* cov_a, const double* const* mu_b,
                       const double* const* cov_b, std::size_t d, double* A, double* z, double* out) {
  constexpr std::size_t L = kLanes;
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      double* a = A + (i * d + j) * L;
      const double s = cov_a[i * d + j];
      for (std::size_t l = 0; l < L; ++l) a[l] = s + cov_b[l][i * d + j];
    }
    for (std::size_t l = 0; l < L; ++l) z[i * L + l] = mu_a[i] - mu_b[l][i];
  }
  bool ok = true;
  double inv[L], acc[L], quad[L] = {}, logdiag[L] = {};
  for (std::size_t j = 0; j < d; ++j) {
    double* ajj = A + (j * d + j) * L;
    for (std::size_t l = 0; l < L; ++l) acc[l] = ajj[l];
    for (std::size_t k = 0; k < j; ++k) {
      const double* ajk = A + (j * d + k) * L;
#pragma omp simd
      for (std::size_t l = 0; l < L; ++l) acc[l] -= ajk[l] * ajk[l];
    }
    for (std::size_t l = 0; l < L; ++l) ok &= acc[l] > 0.0;
    if (!ok) return false;
#pragma omp simd
    for (std::size_t l = 0; l < L; ++l) {
      ajj[l] = std::sqrt(acc[l]);
      inv[l] = 1.0 / ajj[l];
    }
    for (std::size_t i = j + 1; i < d; ++i) {
      double* aij = A + (i * d + j) * L;
      for (std::size_t l = 0; l < L; ++l) acc[l] = aij[l];
      for (std::size_t k = 0; k < j; ++k) {
        const double* aik = A + (i * d + k) * L;
        const double* ajk = A + (j * d + k) * L;
#pragma omp simd
        for (std::size_t l = 0; l < L; ++l) acc[l] -= aik[l] * ajk[l];
      }
#pragma omp simd
      for (std::size_t l = 0; l < L; ++l) aij[l] = acc[l] * inv[l];
    }
  }
  // Forward substitution L z = (mu_a - mu_b) and the log-determinant.
  for (std::size_t i = 0; i < d; ++i) {
    double* zi = z + i * L;
    for (std::size_t k = 0; k < i; ++k) {
      const double* aik = A + (i * d + k) * L;
      const double* zk = z + k * L;
#pragma omp simd
      for (std::size_t l = 0; l < L; ++l) zi[l] -= aik[l] * zk[l];
    }
    const double* aii = A + (i * d + i) * L;
#pragma omp simd
    for (std::size_t l = 0; l < L; ++l) {
      zi[l] /= aii[l];
      quad[l] += zi[l] * zi[l];
    }
    for (std::size_t l = 0; l < L; ++l) logdiag[l] += std::log(aii[l]);
  }
  for (std::size_t l = 0; l < L; ++l)
    out[l] = -0.5 * (static_cast<double>(d) * detail::kLog2Pi + 2.0 * logdiag[l] + quad[l]);
  return true;
}

// Sum in log space: log(sum_t exp(x_t)).
double log_sum_exp(const std::vector<double>& x) {
  double top = kNegInf;
  for (double v : x) top = std::max(top, v);
  if (top == kNegInf) return top;
  double s = 0.0;
  for (double v : x) s += std::exp(v - top);
  return top + std::log(s);
}

// log of the cross term T(f, g) = sum_ab w_a v_b N(mu_a; nu_b, S_a + P_b).
// For f == g the symmetric Gram block is visited once (a <= b).
double log_cross(const Mixture& f, const Mixture& g, bool same, std::vector<double>& terms, LaneWork& work) {
  const std::size_t d = f.dim();
  terms.clear();
  const double* mu_b[kLanes];
  const double* cov_b[kLanes];
  double log_wb[kLanes], out[kLanes];
  for (std::size_t a = 0; a < f.n_components(); ++a) {
    const double wa = f.weights()[static_cast<Eigen::Index>(a)];
    if (wa <= 0.0) continue;
    const double* mu_a = f.means().data() + a * d;
    const double* cov_a = f.covariance_data() + a * d * d;
    std::size_t filled = 0;
    auto flush = [&] {
      for (std::size_t l = filled; l < kLanes; ++l) mu_b[l] = mu_b[0], cov_b[l] = cov_b[0];
      if (!log_overlap_lanes(mu_a, cov_a, mu_b, cov_b, d, work.A.data(), work.z.data(), out))
        throw std::runtime_error("dfmr::pairwise_l2: sum of two covariances is not numerically positive definite");
      for (std::size_t l = 0; l < filled; ++l) terms.push_back(log_wb[l] + out[l]);
      filled = 0;
    };
    for (std::size_t b = same ? a : 0; b < g.n_components(); ++b) {
      const double vb = g.weights()[static_cast<Eigen::Index>(b)];
      if (vb <= 0.0) continue;
      const double mult = (same && b != a) ? 2.0 : 1.0;
      mu_b[filled] = g.means().data() + b * d;
      cov_b[filled] = g.covariance_data() + b * d * d;
      log_wb[filled] = std::log(mult * wa * vb);
      if (++filled == kLanes) flush();
    }
    if (filled > 0) flush();
  }
  return log_sum_exp(terms);
}

// sqrt(exp(lff) + exp(lgg) - 2 exp(lfg)) without overflow, clamped at 0.
double distance_from_logs(double lff, double lgg, double lfg) {
  const double top = std::max(lff, lgg);
  const double v = std::exp(lff - top) + std::exp(lgg - top) - 2.0 * std::exp(lfg - top);
  if (!(v > 0.0)) return 0.0;
  return std::exp(0.5 * top) * std::sqrt(v);
}

void check_dims(const std::vector<Mixture>& mixtures) {
  for (const auto& f : mixtures)
    if (f.dim() != mixtures.front().dim())
      throw std::invalid_argument("dfmr::pairwise_l2: mixtures differ in dimension");
}

}  // namespace

double l2_distance(const Mixture& f, const Mixture& g) {
  return pairwise_l2({f, g}, 1)(0, 1);
}

Eigen::MatrixXd pairwise_l2(const std::vector<Mixture>& mixtures, int n_threads) {
  if (n_threads < 0) throw std::invalid_argument("dfmr::pairwise_l2: n_threads must be >= 0 (0: all hardware threads)");
  check_dims(mixtures);
  const std::size_t m = mixtures.size();
  Eigen::MatrixXd D = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(m));
  if (m == 0) return D;
  const std::size_t d = mixtures.front().dim();
  // Blocks (i, j), i <= j, of the pooled Gram matrix, enumerated row by row.
  std::vector<std::pair<std::size_t, std::size_t>> blocks;
  blocks.reserve(m * (m + 1) / 2);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = i; j < m; ++j) blocks.emplace_back(i, j);
  Eigen::MatrixXd logT(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(m));
  detail::parallel_for(blocks.size(), n_threads, [&](std::size_t t) {
    thread_local std::vector<double> terms;
    thread_local LaneWork work;
    work.resize(d);
    const auto [i, j] = blocks[t];
    const double v = log_cross(mixtures[i], mixtures[j], i == j, terms, work);
    logT(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = v;
    logT(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) = v;
  });
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = i + 1; j < m; ++j) {
      const auto I = static_cast<Eigen::Index>(i), J = static_cast<Eigen::Index>(j);
      D(I, J) = D(J, I) = distance_from_logs(logT(I, I), logT(J, J), logT(I, J));
    }
  return D;
}

}  // namespace dfmr
