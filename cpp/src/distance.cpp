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

// log N(mu_a; mu_b, S_a + S_b). `work` holds d*d + d doubles.
double log_overlap(const double* mu_a, const double* cov_a, const double* mu_b, const double* cov_b,
                   std::size_t d, double* work) {
  double* A = work;
  double* z = work + d * d;
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t j = 0; j <= i; ++j) A[i * d + j] = cov_a[i * d + j] + cov_b[i * d + j];
    z[i] = mu_a[i] - mu_b[i];
  }
  if (!detail::cholesky_lower(A, d))
    throw std::runtime_error("dfmr::pairwise_l2: sum of two covariances is not numerically positive definite");
  detail::forward_solve(A, z, d);
  return -0.5 * (static_cast<double>(d) * detail::kLog2Pi + detail::log_det_chol(A, d) + detail::dot(z, z, d));
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
double log_cross(const Mixture& f, const Mixture& g, bool same, std::vector<double>& terms, double* work) {
  const std::size_t d = f.dim();
  terms.clear();
  for (std::size_t a = 0; a < f.n_components(); ++a) {
    const double wa = f.weights()[static_cast<Eigen::Index>(a)];
    if (wa <= 0.0) continue;
    const double* mu_a = f.means().data() + a * d;
    const double* cov_a = f.covariance_data() + a * d * d;
    for (std::size_t b = same ? a : 0; b < g.n_components(); ++b) {
      const double vb = g.weights()[static_cast<Eigen::Index>(b)];
      if (vb <= 0.0) continue;
      const double mult = (same && b != a) ? 2.0 : 1.0;
      terms.push_back(std::log(mult * wa * vb) +
                      log_overlap(mu_a, cov_a, g.means().data() + b * d, g.covariance_data() + b * d * d, d, work));
    }
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
    thread_local std::vector<double> terms, work;
    work.resize(d * d + d);
    const auto [i, j] = blocks[t];
    const double v = log_cross(mixtures[i], mixtures[j], i == j, terms, work.data());
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
