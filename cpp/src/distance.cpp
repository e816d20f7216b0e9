#include "dfmr/distance.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

#include "cross_l2.hpp"
#include "kernels.hpp"
#include "overlap_kernels.hpp"
#include "parallel.hpp"
#include "vector_math.hpp"

// Calls to the always-inlined vector helpers: the ABI note does not apply (see vector_math.hpp).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace dfmr {

namespace {

using detail::exp_nonpositive;
using detail::kExpArgMin;
using detail::log_normal;
using detail::Vec4;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kLn2 = 0.69314718055994530941723212145818;

// Gaussian overlaps N(mu_a; mu_b, S_a + S_b) are evaluated for one component a against kLanes
// pooled components b at a time, in structure-of-arrays layout: every arithmetic step runs across
// independent lanes, so it vectorises without reassociating any sum (each lane computes exactly
// what a scalar loop would, whichever lane it sits in).
constexpr std::size_t kLanes = detail::kOverlapLanes;

inline std::size_t packed(std::size_t i, std::size_t j) { return i * (i + 1) / 2 + j; }

// All components of all mixtures, laid out for the kernel: component n sits in lane n % kLanes of
// lane group n / kLanes; per group, the packed lower triangle of the covariances (q x kLanes) and
// the means (d x kLanes). The last group is padded with copies of the last component.
struct LanePool {
  std::size_t d = 0, q = 0, N = 0, groups = 0;
  std::vector<double> cov, mean;           // groups * q * kLanes, groups * d * kLanes
  std::vector<double> packed_a, mean_a;    // N * q, N * d: each component alone, for the broadcast side
  std::vector<double> log_w;               // N: log of the component weight within its mixture
  std::vector<std::size_t> first;          // m + 1: first component of each mixture

  // The mixtures `select` (indices into `all`), in that order; all of them when `select` is empty.
  explicit LanePool(const std::vector<Mixture>& all, const std::vector<std::size_t>& select = {}) {
    std::vector<const Mixture*> mixtures;
    if (select.empty())
      for (const auto& f : all) mixtures.push_back(&f);
    else
      for (std::size_t i : select) mixtures.push_back(&all[i]);
    d = all.front().dim();
    q = d * (d + 1) / 2;
    first.push_back(0);
    for (const Mixture* f : mixtures) first.push_back(first.back() + f->n_components());
    N = first.back();
    groups = (N + kLanes - 1) / kLanes;
    cov.resize(groups * q * kLanes);
    mean.resize(groups * d * kLanes);
    packed_a.resize(N * q);
    mean_a.resize(N * d);
    log_w.resize(N);
    std::size_t n = 0;
    for (const Mixture* pf : mixtures)
      for (std::size_t k = 0; k < pf->n_components(); ++k, ++n) {
        const Mixture& f = *pf;
        log_w[n] = std::log(f.weights()[static_cast<Eigen::Index>(k)]);
        const double* S = f.covariance_data() + k * d * d;
        std::copy_n(f.means().data() + k * d, d, mean_a.data() + n * d);
        for (std::size_t i = 0; i < d; ++i)
          for (std::size_t j = 0; j <= i; ++j) packed_a[n * q + packed(i, j)] = S[i * d + j];
      }
    for (std::size_t slot = 0; slot < groups * kLanes; ++slot) {
      const std::size_t src = std::min(slot, N - 1), g = slot / kLanes, l = slot % kLanes;
      for (std::size_t p = 0; p < q; ++p) cov[(g * q + p) * kLanes + l] = packed_a[src * q + p];
      for (std::size_t i = 0; i < d; ++i) mean[(g * d + i) * kLanes + l] = mean_a[src * d + i];
    }
  }
};

// Per-worker scratch: kLanes Cholesky factors of S_a + S_b (packed) and vectors mu_a - mu_b; the
// log overlaps of one row of mixture blocks.
struct LaneWork {
  std::vector<double> A, z, lo, terms, exps;
  explicit LaneWork(std::size_t d) : A(d * (d + 1) / 2 * kLanes), z(d * kLanes) {}
};

// Machines [starts[c], starts[c + 1]) of `pool`, chunks whose lane data (covariances and means)
// take at most about kChunkBytes each (at least one machine): a chunk stays in a core's L2 cache
// while the rows meeting it are computed.
constexpr std::size_t kChunkBytes = std::size_t{512} << 10;

std::vector<std::size_t> chunk_starts(const LanePool& pool) {
  const std::size_t m = pool.first.size() - 1, per_component = (pool.q + pool.d) * sizeof(double);
  std::vector<std::size_t> starts{0};
  for (std::size_t i = 0; i < m; ++i)
    if (i > starts.back() && (pool.first[i + 1] - pool.first[starts.back()]) * per_component > kChunkBytes)
      starts.push_back(i);
  starts.push_back(m);
  return starts;
}

// out[l] = log N(mu_a; mu_b[l], S_a + S_b[l]) for the kLanes components of one lane group
// (Sb: q x kLanes, mub: d x kLanes). Left-looking Cholesky of S_a + S_b, column by column, with the
// forward substitution L z = mu_a - mu_b folded into it: entry (i, j) is formed from S_a + S_b and
// takes its updates -L_ik L_jk, k < j, in registers (all lanes in flight), then is scaled and
// stored once: about a third of the loads and stores of the right-looking form. Each entry
// receives the same operations in the same order as in the right-looking form (and as in
// cholesky_lower). log det = log(prod_j pivot_j), one logarithm per pair (the product is
// renormalised whenever it leaves [2^-500, 2^500]). Returns false if some S_a + S_b is not
// numerically positive definite. (Tried and dropped: the square-root-free U D^-1 U^T form was
// slower; it stores a second triangle to save the square roots.)
template <std::size_t W>
DFMR_ALWAYS_INLINE inline bool log_overlap_lanes(const double* Sa, const double* mua, const double* Sb, const double* mub,
                                                 std::size_t d, double* A, double* z, double* out) {
  using VecW = detail::Vec<W>;
  using BitsW = detail::Bits<W>;
  constexpr std::size_t L = kLanes, V = kLanes / W;
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t v = 0; v < V; ++v) detail::store<W>(z + i * L + W * v, mua[i] - detail::load<W>(mub + i * L + W * v));
  double prod[L], quad[L], inv[L], pivot[L];
  int expo[L];
  for (std::size_t l = 0; l < L; ++l) quad[l] = 0.0, expo[l] = 0;
  // The product of the pivots, and the lanes whose pivot was not in (0, max] (checked once at the
  // end: a bad pivot only spreads NaN or inf through its own lane).
  VecW pv[V];
  for (std::size_t v = 0; v < V; ++v) pv[v] = VecW{} + 1.0;
  BitsW bad = {};
  for (std::size_t j = 0; j < d; ++j) {
    const double* lj = A + packed(j, 0) * L;  // row j of L: entries k < j final
    {
      const std::size_t p = packed(j, j);
      VecW acc[V], zj[V];
      for (std::size_t v = 0; v < V; ++v) acc[v] = Sa[p] + detail::load<W>(Sb + p * L + W * v), zj[v] = detail::load<W>(z + j * L + W * v);
      for (std::size_t k = 0; k < j; ++k)
        for (std::size_t v = 0; v < V; ++v) {
          const VecW l = detail::load<W>(lj + k * L + W * v);
          acc[v] -= l * l;
          zj[v] -= l * detail::load<W>(z + k * L + W * v);
        }
      BitsW wide = {};
      for (std::size_t v = 0; v < V; ++v) {
        detail::store<W>(pivot + W * v, acc[v]);
        detail::store<W>(z + j * L + W * v, zj[v]);
        bad |= ~(BitsW)(acc[v] > 0.0) | (BitsW)(acc[v] > std::numeric_limits<double>::max());
        pv[v] *= acc[v];
        wide |= (BitsW)(pv[v] < 0x1p-500) | (BitsW)(pv[v] > 0x1p500);
      }
      if (detail::any(wide)) {
        for (std::size_t v = 0; v < V; ++v) detail::store<W>(prod + W * v, pv[v]);
        for (std::size_t l = 0; l < L; ++l) {
          int e;
          prod[l] = std::frexp(prod[l], &e);
          expo[l] += e;
        }
        for (std::size_t v = 0; v < V; ++v) pv[v] = detail::load<W>(prod + W * v);
      }
    }
    double* zj = z + j * L;
#pragma omp simd
    for (std::size_t l = 0; l < L; ++l) {
      inv[l] = 1.0 / std::sqrt(pivot[l]);
      zj[l] *= inv[l];
      quad[l] += zj[l] * zj[l];
    }
    VecW scale[V];
    for (std::size_t v = 0; v < V; ++v) scale[v] = detail::load<W>(inv + W * v);
    // Column j below the diagonal, two rows at a time (each load of row j serves both).
    std::size_t i = j + 1;
    for (; i + 1 < d; i += 2) {
      const double* li = A + packed(i, 0) * L;
      const double* lk = A + packed(i + 1, 0) * L;
      const std::size_t p = packed(i, j), p1 = packed(i + 1, j);
      VecW acc[V], acc1[V];
      for (std::size_t v = 0; v < V; ++v)
        acc[v] = Sa[p] + detail::load<W>(Sb + p * L + W * v), acc1[v] = Sa[p1] + detail::load<W>(Sb + p1 * L + W * v);
      for (std::size_t k = 0; k < j; ++k)
        for (std::size_t v = 0; v < V; ++v) {
          const VecW l = detail::load<W>(lj + k * L + W * v);
          acc[v] -= detail::load<W>(li + k * L + W * v) * l;
          acc1[v] -= detail::load<W>(lk + k * L + W * v) * l;
        }
      for (std::size_t v = 0; v < V; ++v)
        detail::store<W>(A + p * L + W * v, acc[v] * scale[v]), detail::store<W>(A + p1 * L + W * v, acc1[v] * scale[v]);
    }
    for (; i < d; ++i) {
      const double* li = A + packed(i, 0) * L;
      const std::size_t p = packed(i, j);
      VecW acc[V];
      for (std::size_t v = 0; v < V; ++v) acc[v] = Sa[p] + detail::load<W>(Sb + p * L + W * v);
      for (std::size_t k = 0; k < j; ++k)
        for (std::size_t v = 0; v < V; ++v) acc[v] -= detail::load<W>(li + k * L + W * v) * detail::load<W>(lj + k * L + W * v);
      for (std::size_t v = 0; v < V; ++v) detail::store<W>(A + p * L + W * v, acc[v] * scale[v]);
    }
  }
  if (detail::any(bad)) return false;
  for (std::size_t v = 0; v < V; ++v) detail::store<W>(prod + W * v, pv[v]);
  const double base = static_cast<double>(d) * detail::kLog2Pi;
  bool normal = true;
  for (std::size_t l = 0; l < L; ++l)
    normal &= prod[l] >= std::numeric_limits<double>::min() && prod[l] <= std::numeric_limits<double>::max();
  if (normal) {
    for (std::size_t v = 0; v < L; v += 4) {
      const Vec4 e = {static_cast<double>(expo[v]), static_cast<double>(expo[v + 1]), static_cast<double>(expo[v + 2]),
                      static_cast<double>(expo[v + 3])};
      detail::store<4>(out + v, -0.5 * ((base + log_normal(detail::load<4>(prod + v), e)) + detail::load<4>(quad + v)));
    }
    return true;
  }
  // glibc's log also copes with a product beyond the normal range (subnormal, 0, inf).
  for (std::size_t l = 0; l < L; ++l) out[l] = -0.5 * (base + std::log(prod[l]) + expo[l] * kLn2 + quad[l]);
  return true;
}

// The kernel compiled for AVX2 (four lanes per register) and for the x86-64 baseline, and, where
// the CPU has it, for AVX-512 (eight lanes per register: half the instructions, twice the
// registers). Every lane receives the same operations in the same order in each (FMA contraction
// included), so the AVX-512 and AVX2 kernels give the same bits (cpp/tests/test_distance.cpp
// compares every kernel the CPU can run); the baseline one, without FMA, may differ in the last
// bits, as any clone below x86-64-v3 does.
DFMR_TARGET_CLONES("arch=x86-64-v3", "default")
bool log_overlap_lanes_vec4(const double* Sa, const double* mua, const double* Sb, const double* mub, std::size_t d,
                            double* A, double* z, double* out) {
  return log_overlap_lanes<4>(Sa, mua, Sb, mub, d, A, z, out);
}

#if DFMR_HAVE_X86_64_V4
DFMR_TARGET_X86_64_V4
bool log_overlap_lanes_vec8(const double* Sa, const double* mua, const double* Sb, const double* mub, std::size_t d,
                            double* A, double* z, double* out) {
  return log_overlap_lanes<8>(Sa, mua, Sb, mub, d, A, z, out);
}
#endif

}  // namespace

const std::vector<detail::LogOverlapKernel>& detail::log_overlap_kernels() {
  static const std::vector<LogOverlapKernel> kernels = [] {
    std::vector<LogOverlapKernel> k;
#if DFMR_HAVE_X86_64_V4
    if (cpu_has_x86_64_v4()) k.push_back(&log_overlap_lanes_vec8);
#endif
    k.push_back(&log_overlap_lanes_vec4);
    return k;
  }();
  return kernels;
}

namespace {

// Sum in log space: log(sum_t exp(x_t)), x_t < +inf (NaN if some x_t is). Terms with
// x_t - top < kExpArgMin = -64 are left out: each is below e^-64 = 1.6e-28 times the top term, so
// even thousands of them move the sum by less than its rounding. The exponentials of the others
// are computed four at a time into `e` (room for n rounded up to a multiple of 4), then summed in
// order.
DFMR_TARGET_CLONES("arch=x86-64-v3", "default")
double log_sum_exp(const double* x, std::size_t n, double* e) {
  double top = kNegInf;
  bool nan = false;
  for (std::size_t t = 0; t < n; ++t) top = std::max(top, x[t]), nan |= std::isnan(x[t]);
  if (nan) return std::numeric_limits<double>::quiet_NaN();
  if (top == kNegInf) return top;
  const std::size_t full = n - n % 4;
  for (std::size_t t = 0; t < full; t += 4) detail::store<4>(e + t, exp_nonpositive(detail::load<4>(x + t) - top));
  if (full < n) {
    double tail[4] = {kNegInf, kNegInf, kNegInf, kNegInf};
    std::copy(x + full, x + n, tail);
    detail::store<4>(e + full, exp_nonpositive(detail::load<4>(tail) - top));
  }
  double s = 0.0;
  for (std::size_t t = 0; t < n; ++t) s += e[t];
  return top + std::log(s);
}

// out[j - j0] = log T(f, g) = log sum_ab w_a v_b N(mu_a; nu_b, S_a + P_b) for f mixture i of
// `apool` and g each mixture j in [j0, j1) of `pool`. The value of a pair depends only on the two
// mixtures and their roles, not on the range or pool it was asked with (lanes are independent),
// so every function puts the mixture with the lower index first and gets the same bits.
void log_cross_row(const LanePool& apool, std::size_t i, const LanePool& pool, std::size_t j0, std::size_t j1,
                   LaneWork& work, double* out) {
  const std::size_t d = pool.d, q = pool.q;
  const std::size_t a0 = apool.first[i], a1 = apool.first[i + 1];
  const std::size_t c0 = pool.first[j0], c1 = pool.first[j1], width = c1 - c0;
  work.lo.resize((a1 - a0) * width);
  const detail::LogOverlapKernel kernel = detail::log_overlap_kernels().front();
  double lanes[kLanes];
  for (std::size_t g = c0 / kLanes; g * kLanes < c1; ++g) {
    const double* Sb = pool.cov.data() + g * q * kLanes;
    const double* mub = pool.mean.data() + g * d * kLanes;
    const std::size_t lo = std::max(c0, g * kLanes), hi = std::min(c1, (g + 1) * kLanes);
    for (std::size_t a = a0; a < a1; ++a) {
      if (!kernel(apool.packed_a.data() + a * q, apool.mean_a.data() + a * d, Sb, mub, d, work.A.data(), work.z.data(), lanes))
        throw std::runtime_error("dfmr::pairwise_l2: sum of two covariances is not numerically positive definite");
      for (std::size_t n = lo; n < hi; ++n) work.lo[(a - a0) * width + (n - c0)] = lanes[n - g * kLanes];
    }
  }
  for (std::size_t j = j0; j < j1; ++j) {
    const std::size_t b0 = pool.first[j], b1 = pool.first[j + 1];
    work.terms.clear();
    for (std::size_t a = a0; a < a1; ++a)
      for (std::size_t b = b0; b < b1; ++b)
        work.terms.push_back(apool.log_w[a] + pool.log_w[b] + work.lo[(a - a0) * width + (b - c0)]);
    work.exps.resize(work.terms.size() + 4);
    out[j - j0] = log_sum_exp(work.terms.data(), work.terms.size(), work.exps.data());
  }
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
  // The upper triangle of log T, in tiles: the columns in chunks (chunk_starts), and each row i
  // against the columns j >= i of one chunk as one task, chunk after chunk (tasks handed out
  // dynamically), so that a chunk's lane data is read from cache by every row that meets it
  // rather than all of the pool streamed once per row. Written into the lower triangle of logT,
  // then turned into distances.
  const LanePool pool(mixtures);
  const std::vector<std::size_t> starts = chunk_starts(pool);
  const std::size_t n_chunks = starts.size() - 1;
  std::vector<LaneWork> work(detail::worker_count(m * n_chunks, n_threads), LaneWork(pool.d));
  Eigen::MatrixXd logT(M, M);
  detail::parallel_for(m * n_chunks, n_threads, [&](std::size_t t, std::size_t w) {
    const std::size_t k = t / m, i = t % m, j0 = std::max(i, starts[k]), j1 = starts[k + 1];
    if (j0 >= j1) return;
    log_cross_row(pool, i, pool, j0, j1, work[w], &logT(static_cast<Eigen::Index>(j0), static_cast<Eigen::Index>(i)));
  });
  std::vector<double> diag(m);
  for (std::size_t i = 0; i < m; ++i) diag[i] = logT(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(i));
  out.exponent = scale_exponent(diag);
  // Row i's pairs j > i: every entry is written by one task.
  detail::parallel_for(m, n_threads, [&](std::size_t i, std::size_t) {
    for (std::size_t j = i + 1; j < m; ++j) {
      const auto I = static_cast<Eigen::Index>(i), J = static_cast<Eigen::Index>(j);
      const double v = identical(mixtures[i], mixtures[j]) ? 0.0 : scaled_distance(diag[i], diag[j], logT(J, I), out.exponent);
      out.scaled(I, J) = out.scaled(J, I) = v;
    }
  });
  return out;
}

namespace detail {

struct CrossL2::Impl {
  const std::vector<Mixture>& mixtures;
  int n_threads;
  LanePool pool;
  std::vector<double> diag;  // log T(i, i) of every mixture
  int exponent = 0;

  Impl(const std::vector<Mixture>& f, int threads) : mixtures(f), n_threads(threads), pool(f), diag(f.size()) {
    const std::size_t m = f.size();
    std::vector<LaneWork> work(detail::worker_count(m, n_threads), LaneWork(pool.d));
    detail::parallel_for(m, n_threads, [&](std::size_t t, std::size_t w) {
      log_cross_row(pool, t, pool, t, t + 1, work[w], &diag[t]);
    });
    exponent = scale_exponent(diag);
  }
};

CrossL2::CrossL2(const std::vector<Mixture>& mixtures, int n_threads) {
  check_input(mixtures, n_threads);
  if (mixtures.empty()) throw std::invalid_argument("dfmr::cross_l2_scaled: no mixtures");
  impl_ = std::make_unique<Impl>(mixtures, n_threads);
}

CrossL2::~CrossL2() = default;

ScaledDistances CrossL2::operator()(const std::vector<std::size_t>& rows, const std::vector<std::size_t>& cols) const {
  const std::vector<Mixture>& mixtures = impl_->mixtures;
  const LanePool& pool = impl_->pool;
  const std::vector<double>& diag = impl_->diag;
  const int n_threads = impl_->n_threads;
  const std::size_t m = mixtures.size();
  for (std::size_t i : rows)
    if (i >= m) throw std::invalid_argument("dfmr::cross_l2_scaled: row index out of range");
  for (std::size_t j : cols)
    if (j >= m) throw std::invalid_argument("dfmr::cross_l2_scaled: column index out of range");
  const auto R = static_cast<Eigen::Index>(rows.size()), C = static_cast<Eigen::Index>(cols.size());
  ScaledDistances out{Eigen::MatrixXd::Zero(R, C), impl_->exponent};
  // Rows and columns in increasing index order, each set gathered into its own lane pool (the
  // pool of all m when every machine is asked for); every requested pair is computed once, lower
  // index first, many lanes at a time: row i against the columns j > i (a suffix of the column
  // pool), column j against the rows i > j. The latter in chunks of row machines (chunk_starts),
  // chunk by chunk (every column against one chunk before the next chunk), so that a chunk's lanes
  // are read from cache by every column rather than the whole row pool streamed once per column.
  std::vector<std::size_t> rs(rows), cs(cols);
  std::sort(rs.begin(), rs.end());
  rs.erase(std::unique(rs.begin(), rs.end()), rs.end());
  std::sort(cs.begin(), cs.end());
  cs.erase(std::unique(cs.begin(), cs.end()), cs.end());
  std::optional<LanePool> own_rows, own_cols;
  const LanePool& row_pool = rs.size() == m ? pool : own_rows.emplace(mixtures, rs);
  const LanePool& col_pool = cs.size() == m ? pool : own_cols.emplace(mixtures, cs);
  // logT_rc[a][b]: rows rs[a] x columns cs[b].
  Eigen::MatrixXd logT_rc = Eigen::MatrixXd::Zero(static_cast<Eigen::Index>(rs.size()), static_cast<Eigen::Index>(cs.size()));
  const std::vector<std::size_t> starts = chunk_starts(row_pool);
  const std::size_t n_chunks = starts.size() - 1;
  const std::size_t n_tasks = rs.size() + n_chunks * cs.size();
  std::vector<LaneWork> work(detail::worker_count(n_tasks, n_threads), LaneWork(pool.d));
  detail::parallel_for(n_tasks, n_threads, [&](std::size_t t, std::size_t w) {
    if (t < rs.size()) {
      const std::size_t a = t, i = rs[a];
      const std::size_t b0 = static_cast<std::size_t>(std::upper_bound(cs.begin(), cs.end(), i) - cs.begin());
      if (b0 == cs.size()) return;
      std::vector<double> v(cs.size() - b0);
      log_cross_row(pool, i, col_pool, b0, cs.size(), work[w], v.data());
      for (std::size_t b = b0; b < cs.size(); ++b) logT_rc(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(b)) = v[b - b0];
      return;
    }
    const std::size_t chunk = (t - rs.size()) / cs.size(), b = (t - rs.size()) % cs.size(), j = cs[b];
    const std::size_t first = static_cast<std::size_t>(std::upper_bound(rs.begin(), rs.end(), j) - rs.begin());
    const std::size_t a0 = std::max(first, starts[chunk]), a1 = starts[chunk + 1];
    if (a0 >= a1) return;
    std::vector<double> v(a1 - a0);
    log_cross_row(pool, j, row_pool, a0, a1, work[w], v.data());
    for (std::size_t a = a0; a < a1; ++a) logT_rc(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(b)) = v[a - a0];
  });
  detail::parallel_for(rows.size(), n_threads, [&](std::size_t r, std::size_t) {
    const std::size_t i = rows[r];
    const auto a = std::lower_bound(rs.begin(), rs.end(), i) - rs.begin();
    for (Eigen::Index c = 0; c < C; ++c) {
      const std::size_t j = cols[static_cast<std::size_t>(c)];
      if (i == j || identical(mixtures[i], mixtures[j])) continue;  // 0
      const auto b = std::lower_bound(cs.begin(), cs.end(), j) - cs.begin();
      out.scaled(static_cast<Eigen::Index>(r), c) = scaled_distance(diag[i], diag[j], logT_rc(a, b), out.exponent);
    }
  });
  return out;
}

}  // namespace detail

ScaledDistances cross_l2_scaled(const std::vector<Mixture>& mixtures, const std::vector<std::size_t>& rows,
                                const std::vector<std::size_t>& cols, int n_threads) {
  if (mixtures.empty()) {  // (otherwise CrossL2 checks the input)
    check_input(mixtures, n_threads);
    if (!rows.empty()) throw std::invalid_argument("dfmr::cross_l2_scaled: row index out of range");
    if (!cols.empty()) throw std::invalid_argument("dfmr::cross_l2_scaled: column index out of range");
    return ScaledDistances{Eigen::MatrixXd::Zero(0, 0), 0};
  }
  return detail::CrossL2(mixtures, n_threads)(rows, cols);
}

Eigen::MatrixXd pairwise_l2(const std::vector<Mixture>& mixtures, int n_threads) {
  ScaledDistances s = pairwise_l2_scaled(mixtures, n_threads);
  const auto m = static_cast<std::size_t>(s.scaled.cols());
  detail::parallel_for(m, n_threads, [&](std::size_t j, std::size_t) {  // a column each
    double* col = s.scaled.data() + j * m;
    for (std::size_t i = 0; i < m; ++i) col[i] = std::ldexp(col[i], s.exponent);
  });
  return std::move(s.scaled);
}

}  // namespace dfmr
