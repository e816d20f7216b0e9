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
constexpr double kLn2 = 0.69314718055994530941723212145818;

// Gaussian overlaps are evaluated kLanes component pairs at a time in structure-of-arrays
// layout: every arithmetic step runs across independent lanes, so it vectorises without
// reassociating any sum (each lane computes exactly what a scalar loop would).
constexpr std::size_t kLanes = 8;

// Per-worker scratch: the packed lower triangles of kLanes matrices S_a + S_b, and kLanes
// vectors mu_a - mu_b; plus the (a, b) pairs of the current block.
struct LaneWork {
  std::vector<double> A, z, terms;
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  std::vector<double> log_w;
  void resize(std::size_t d) {
    A.resize(d * (d + 1) / 2 * kLanes);
    z.resize(d * kLanes);
  }
};

inline std::size_t packed(std::size_t i, std::size_t j) { return i * (i + 1) / 2 + j; }

// out[l] = log N(mu_a[l]; mu_b[l], S_a[l] + S_b[l]) for l < kLanes. Returns false if some
// S_a + S_b is not numerically positive definite.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(DFMR_NO_MULTIVERSION)
__attribute__((target_clones("avx2", "default")))
#endif
bool log_overlap_lanes(const double* const* mu_a, const double* const* cov_a, const double* const* mu_b,
                       const double* const* cov_b, std::size_t d, double* A, double* z, double* out) {
  constexpr std::size_t L = kLanes;
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      double* a = A + packed(i, j) * L;
      for (std::size_t l = 0; l < L; ++l) a[l] = cov_a[l][i * d + j] + cov_b[l][i * d + j];
    }
    for (std::size_t l = 0; l < L; ++l) z[i * L + l] = mu_a[l][i] - mu_b[l][i];
  }
  bool ok = true;
  double inv[L], acc[L], quad[L] = {}, logdiag[L] = {};
  for (std::size_t j = 0; j < d; ++j) {
    double* ajj = A + packed(j, j) * L;
    for (std::size_t l = 0; l < L; ++l) acc[l] = ajj[l];
    for (std::size_t k = 0; k < j; ++k) {
      const double* ajk = A + packed(j, k) * L;
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
      double* aij = A + packed(i, j) * L;
      for (std::size_t l = 0; l < L; ++l) acc[l] = aij[l];
      const double* ai = A + packed(i, 0) * L;
      const double* aj = A + packed(j, 0) * L;
      for (std::size_t k = 0; k < j; ++k) {
#pragma omp simd
        for (std::size_t l = 0; l < L; ++l) acc[l] -= ai[k * L + l] * aj[k * L + l];
      }
#pragma omp simd
      for (std::size_t l = 0; l < L; ++l) aij[l] = acc[l] * inv[l];
    }
  }
  // Forward substitution L z = (mu_a - mu_b) and the log-determinant.
  for (std::size_t i = 0; i < d; ++i) {
    double* zi = z + i * L;
    const double* ai = A + packed(i, 0) * L;
    for (std::size_t k = 0; k < i; ++k) {
      const double* zk = z + k * L;
#pragma omp simd
      for (std::size_t l = 0; l < L; ++l) zi[l] -= ai[k * L + l] * zk[l];
    }
    const double* aii = A + packed(i, i) * L;
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

// log of the cross term T(f, g) = sum_ab w_a v_b N(mu_a; nu_b, S_a + P_b). For f == g the
// symmetric Gram block is visited once (a <= b, off-diagonal pairs counted twice). The
// block's component pairs fill the lanes in order, whatever component they belong to.
double log_cross(const Mixture& f, const Mixture& g, bool same, LaneWork& work) {
  const std::size_t d = f.dim();
  work.pairs.clear();
  work.log_w.clear();
  for (std::size_t a = 0; a < f.n_components(); ++a) {
    const double wa = f.weights()[static_cast<Eigen::Index>(a)];
    if (wa <= 0.0) continue;
    for (std::size_t b = same ? a : 0; b < g.n_components(); ++b) {
      const double vb = g.weights()[static_cast<Eigen::Index>(b)];
      if (vb <= 0.0) continue;
      work.pairs.emplace_back(a, b);
      work.log_w.push_back(std::log(((same && b != a) ? 2.0 : 1.0) * wa * vb));
    }
  }
  work.terms.resize(work.pairs.size());
  const double* mu_a[kLanes];
  const double* cov_a[kLanes];
  const double* mu_b[kLanes];
  const double* cov_b[kLanes];
  double out[kLanes];
  for (std::size_t p0 = 0; p0 < work.pairs.size(); p0 += kLanes) {
    const std::size_t filled = std::min(kLanes, work.pairs.size() - p0);
    for (std::size_t l = 0; l < kLanes; ++l) {
      // Lanes past the end repeat the block's last pair; their results are not used.
      const auto [a, b] = work.pairs[p0 + std::min(l, filled - 1)];
      mu_a[l] = f.means().data() + a * d;
      cov_a[l] = f.covariance_data() + a * d * d;
      mu_b[l] = g.means().data() + b * d;
      cov_b[l] = g.covariance_data() + b * d * d;
    }
    if (!log_overlap_lanes(mu_a, cov_a, mu_b, cov_b, d, work.A.data(), work.z.data(), out))
      throw std::runtime_error("dfmr::pairwise_l2: sum of two covariances is not numerically positive definite");
    for (std::size_t l = 0; l < filled; ++l) work.terms[p0 + l] = work.log_w[p0 + l] + out[l];
  }
  return log_sum_exp(work.terms);
}

// 2^-exponent * sqrt(exp(lff) + exp(lgg) - 2 exp(lfg)), evaluated without overflow or
// underflow of the intermediate terms, clamped at 0 and saturated at the largest double.
double scaled_distance(double lff, double lgg, double lfg, int exponent) {
  const double top = std::max(lff, lgg);
  const double v = std::exp(lff - top) + std::exp(lgg - top) - 2.0 * std::exp(lfg - top);
  if (std::isnan(v)) throw std::runtime_error("dfmr::pairwise_l2: NaN in a distance");
  if (!(v > 0.0)) return 0.0;
  // Where D itself is a normal double, scaling by 2^-exponent is exact, so comparisons
  // between scaled entries are exactly comparisons between distances.
  const double dist = std::exp(0.5 * top) * std::sqrt(v);
  if (std::isfinite(dist) && dist >= std::numeric_limits<double>::min()) {
    const double scaled = std::ldexp(dist, -exponent);
    if (std::isfinite(scaled) && scaled >= std::numeric_limits<double>::min()) return scaled;
  }
  const double scaled = std::exp(0.5 * top - exponent * kLn2) * std::sqrt(v);
  return std::min(scaled, std::numeric_limits<double>::max());
}

bool identical(const Mixture& f, const Mixture& g) {
  const std::size_t K = f.n_components(), d = f.dim();
  return K == g.n_components() && f.weights() == g.weights() && f.means() == g.means() &&
         std::equal(f.covariance_data(), f.covariance_data() + K * d * d, g.covariance_data());
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

namespace {

// log T(i, j) for every block (i, j), i <= j, spread over the workers. T(i, j) is always
// evaluated with the lower index first, so that an entry does not depend on which of the
// distance functions asked for it.
std::vector<double> log_cross_blocks(const std::vector<Mixture>& mixtures,
                                     const std::vector<std::pair<std::size_t, std::size_t>>& blocks, int n_threads) {
  std::vector<double> out(blocks.size());
  if (blocks.empty()) return out;
  std::vector<LaneWork> work(detail::worker_count(blocks.size(), n_threads));
  for (auto& w : work) w.resize(mixtures.front().dim());
  detail::parallel_for(blocks.size(), n_threads, [&](std::size_t t, std::size_t w) {
    const auto [i, j] = blocks[t];
    out[t] = log_cross(mixtures[i], mixtures[j], i == j, work[w]);
  });
  return out;
}

// The power of two nearest the median norm ||f_i|| = exp(log T(i, i) / 2).
int scale_exponent(std::vector<double> log_norm2) {
  const std::size_t m = log_norm2.size();
  std::nth_element(log_norm2.begin(), log_norm2.begin() + static_cast<std::ptrdiff_t>(m / 2), log_norm2.end());
  return static_cast<int>(std::lround(0.5 * log_norm2[m / 2] / kLn2));
}

void check_input(const std::vector<Mixture>& mixtures, int n_threads) {
  if (n_threads < 0) throw std::invalid_argument("dfmr::pairwise_l2: n_threads must be >= 0 (0: all hardware threads)");
  check_dims(mixtures);
}

}  // namespace

ScaledDistances pairwise_l2_scaled(const std::vector<Mixture>& mixtures, int n_threads) {
  check_input(mixtures, n_threads);
  const std::size_t m = mixtures.size();
  const auto M = static_cast<Eigen::Index>(m);
  ScaledDistances out{Eigen::MatrixXd::Zero(M, M), 0};
  if (m == 0) return out;
  // Blocks (i, j), i <= j, of the pooled Gram matrix, enumerated row by row.
  std::vector<std::pair<std::size_t, std::size_t>> blocks;
  blocks.reserve(m * (m + 1) / 2);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = i; j < m; ++j) blocks.emplace_back(i, j);
  const std::vector<double> logT = log_cross_blocks(mixtures, blocks, n_threads);
  std::vector<double> diag(m);
  for (std::size_t t = 0; t < blocks.size(); ++t)
    if (blocks[t].first == blocks[t].second) diag[blocks[t].first] = logT[t];
  out.exponent = scale_exponent(diag);
  for (std::size_t t = 0; t < blocks.size(); ++t) {
    const auto [i, j] = blocks[t];
    if (i == j) continue;
    const double v = identical(mixtures[i], mixtures[j]) ? 0.0 : scaled_distance(diag[i], diag[j], logT[t], out.exponent);
    out.scaled(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = v;
    out.scaled(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) = v;
  }
  return out;
}

ScaledDistances cross_l2_scaled(const std::vector<Mixture>& mixtures, const std::vector<std::size_t>& rows,
                                const std::vector<std::size_t>& cols, int n_threads) {
  check_input(mixtures, n_threads);
  const std::size_t m = mixtures.size();
  for (std::size_t i : rows)
    if (i >= m) throw std::invalid_argument("dfmr::cross_l2_scaled: row index out of range");
  for (std::size_t j : cols)
    if (j >= m) throw std::invalid_argument("dfmr::cross_l2_scaled: column index out of range");
  ScaledDistances out{Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(cols.size())), 0};
  if (m == 0) return out;
  std::vector<std::pair<std::size_t, std::size_t>> blocks;
  blocks.reserve(m + rows.size() * cols.size());
  for (std::size_t i = 0; i < m; ++i) blocks.emplace_back(i, i);
  for (std::size_t i : rows)
    for (std::size_t j : cols) blocks.emplace_back(std::min(i, j), std::max(i, j));
  const std::vector<double> logT = log_cross_blocks(mixtures, blocks, n_threads);
  const std::vector<double> diag(logT.begin(), logT.begin() + static_cast<std::ptrdiff_t>(m));
  out.exponent = scale_exponent(diag);
  std::size_t t = m;
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t c = 0; c < cols.size(); ++c, ++t) {
      const std::size_t i = rows[r], j = cols[c];
      out.scaled(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) =
          i == j || identical(mixtures[i], mixtures[j]) ? 0.0 : scaled_distance(diag[i], diag[j], logT[t], out.exponent);
    }
  return out;
}

Eigen::MatrixXd pairwise_l2(const std::vector<Mixture>& mixtures, int n_threads) {
  const ScaledDistances s = pairwise_l2_scaled(mixtures, n_threads);
  return s.scaled.unaryExpr([&](double v) { return std::ldexp(v, s.exponent); });
}

}  // namespace dfmr
