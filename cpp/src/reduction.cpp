#include "dfmr/reduction.hpp"

#include <Eigen/Cholesky>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dfmr/covariance.hpp"
#include "kernels.hpp"
#include "parallel.hpp"

namespace dfmr {

namespace {

// Pooled components per chunk of the cost: its accumulators stay in vector registers.
constexpr std::size_t kLanes = 32;

// The pooled components in the layout the cost needs, computed once per reduction and
// shared by every start, stored component-minor (structure of arrays) so that the cost loops run
// over pooled components in SIMD lanes, in tiles of kLanes components (the last one padded with
// zeros; the padding lanes are computed and discarded): in tile t, row c of packed_cov holds
// entry c of the packed lower triangle of each covariance (off-diagonal entries doubled, so that
// <P, S> = packed(P) . packed2(S)), row i of mean entry i of each mean. A tile is contiguous, so
// that the cost streams the pool sequentially. Then the log-dets. The moment matching reads the
// lower triangles component by component (`packed`).
struct Pool {
  const Mixture& mixture;
  std::size_t N, tiles, d, q;
  std::vector<double> packed_cov;  // tiles x q x kLanes
  std::vector<double> packed;      // N x q: the packed lower triangles as they are, component by component
  std::vector<double> mean;        // tiles x d x kLanes
  std::vector<double> log_det;     // tiles x kLanes

  explicit Pool(const Mixture& f)
      : mixture(f), N(f.n_components()), tiles((N + kLanes - 1) / kLanes), d(f.dim()), q(d * (d + 1) / 2),
        packed_cov(tiles * q * kLanes, 0.0), packed(N * q), mean(tiles * d * kLanes, 0.0), log_det(tiles * kLanes, 0.0) {
    for (std::size_t n = 0; n < N; ++n) {
      const std::size_t t = n / kLanes, b = n % kLanes;
      const double* S = f.covariance_data() + n * d * d;
      std::size_t c = 0;
      for (std::size_t i = 0; i < d; ++i) {
        mean[(t * d + i) * kLanes + b] = f.means()(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(i));
        for (std::size_t j = 0; j <= i; ++j, ++c) {
          packed[n * q + c] = S[i * d + j];
          packed_cov[(t * q + c) * kLanes + b] = (i == j ? 1.0 : 2.0) * S[i * d + j];
        }
      }
      log_det[n] = f.log_det(n);
    }
  }
};

// Components of the current reduced mixture, with the factorisations the cost needs.
struct Reduced {
  std::size_t K = 0, d = 0;
  std::vector<double> mean, cov;  // K*d, K*d*d
  std::vector<RowMatrix> chol_inv;  // L_k^-1 (lower triangular)
  RowMatrix packed_prec;            // K x q, packed lower triangle of V_k^-1
  std::vector<double> log_det;
};

// Cholesky of a moment-matched covariance S (row-major d x d, symmetric) into L. A convex
// combination of positive-definite matrices is positive definite; rounding can still break that
// when the pooled components differ in scale by many orders of magnitude (hostile input: means
// 1e50 apart merged with covariances of 1e-50), the small eigenvalues then being pure rounding
// noise. A ridge (1e-14 of the mean variance, grown tenfold per failure up to 1e-6 of it) is
// then added to the diagonal of S itself, so that S stays exactly the matrix that L factorises:
// the reduced mixture that leaves the core is positive definite by construction. A matrix that
// needs more than that is not a rounding victim but broken, and is reported.
void factor(double* S, double* L, std::size_t d) {
  double ridge = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < d; ++i) scale += std::abs(S[i * d + i]);
  scale = std::max(scale / static_cast<double>(d), std::numeric_limits<double>::min());
  for (; ridge <= 1e-6 * scale; ridge = ridge == 0.0 ? 1e-14 * scale : 10.0 * ridge) {
    std::copy(S, S + d * d, L);
    for (std::size_t i = 0; i < d; ++i) L[i * d + i] += ridge;
    // Pivots that are rounding noise are refused (see detail::cholesky_lower).
    if (detail::cholesky_lower(L, d, 2.0 * static_cast<double>(d) * std::numeric_limits<double>::epsilon())) {
      for (std::size_t i = 0; i < d; ++i) {
        S[i * d + i] += ridge;
        for (std::size_t j = i + 1; j < d; ++j) L[i * d + j] = 0.0;
      }
      return;
    }
  }
  throw std::runtime_error("dfmr::reduce: a reduced covariance is not positive definite");
}

Reduced make_reduced(std::size_t K, std::size_t d, std::vector<double> mean, std::vector<double> cov) {
  Reduced G;
  G.K = K;
  G.d = d;
  G.mean = std::move(mean);
  G.cov = std::move(cov);
  const auto D = static_cast<Eigen::Index>(d);
  G.packed_prec.resize(static_cast<Eigen::Index>(K), static_cast<Eigen::Index>(d * (d + 1) / 2));
  G.log_det.assign(K, 0.0);
  RowMatrix L(D, D);
  for (std::size_t k = 0; k < K; ++k) {
    // A covariance equal to an earlier one's (every component of EII, EEI and EEE, whose update
    // and starts share one matrix) shares its factorisation: the same bits, computed once. (An
    // earlier one that factor() had to ridge no longer matches, and k is factorised itself.)
    std::size_t same = k;
    for (std::size_t j = 0; j < k && same == k; ++j)
      if (std::equal(G.cov.data() + k * d * d, G.cov.data() + (k + 1) * d * d, G.cov.data() + j * d * d)) same = j;
    if (same < k) {
      G.log_det[k] = G.log_det[same];
      G.packed_prec.row(static_cast<Eigen::Index>(k)) = G.packed_prec.row(static_cast<Eigen::Index>(same));
      G.chol_inv.push_back(G.chol_inv[same]);
      continue;
    }
    factor(G.cov.data() + k * d * d, L.data(), d);
    G.log_det[k] = detail::log_det_chol(L.data(), d);
    // A diagonal covariance (every update of EII, VII, EEI, VEI, EVI, VVI, and every one in d = 1)
    // has a diagonal factor (cholesky_lower's off-diagonal entries are exact zeros), whose inverse
    // and precision are 1 / L_ii and its square: the bits the triangular solve and the product
    // below give for it (their other terms are exact zeros), without Eigen's blocked kernels,
    // which cost about 8,000 instructions a component at d = 10.
    bool diagonal = true;
    for (std::size_t i = 0; i < d && diagonal; ++i)
      for (std::size_t j = 0; j < i && diagonal; ++j) diagonal = L(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) == 0.0;
    RowMatrix Linv;
    if (diagonal) {
      Linv = RowMatrix::Zero(D, D);
      for (Eigen::Index i = 0; i < D; ++i) Linv(i, i) = 1.0 / L(i, i);
    } else {
      Linv = L.triangularView<Eigen::Lower>().solve(RowMatrix::Identity(D, D));
    }
    std::size_t c = 0;
    if (diagonal) {
      for (Eigen::Index i = 0; i < D; ++i)
        for (Eigen::Index j = 0; j <= i; ++j, ++c)
          G.packed_prec(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(c)) = i == j ? Linv(i, i) * Linv(i, i) : 0.0;
    } else {
      const RowMatrix P = Linv.transpose() * Linv;
      for (Eigen::Index i = 0; i < D; ++i)
        for (Eigen::Index j = 0; j <= i; ++j, ++c) G.packed_prec(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(c)) = P(i, j);
    }
    G.chol_inv.push_back(std::move(Linv));
  }
  return G;
}

bool unconstrained(CovarianceModel model) { return model == CovarianceModel::VVV || model == CovarianceModel::V; }

// The constrained update of the covariances of a covariance model other than full (VVV).
//
// With the plan pi fixed, the transport cost is, for reduced components N(m_k, V_k),
//   sum_nk pi_nk KL(N(mu_n, S_n) || N(m_k, V_k))
//     = 1/2 sum_k [ tr(V_k^-1 W_k) + n_k log det V_k ] + (terms free of m_k, V_k)
//       + 1/2 sum_k n_k (mbar_k - m_k)^T V_k^-1 (mbar_k - m_k),
// with n_k = sum_n pi_nk, mbar_k = sum_n pi_nk mu_n / n_k and W_k = sum_n pi_nk (S_n + (mu_n - mbar_k)
// (mu_n - mbar_k)^T) = n_k Vbar_k (Vbar_k the moment match). Whatever the V_k, the last term is
// smallest (zero) at m_k = mbar_k; the rest is the Gaussian M-step objective of the scatters W_k and
// counts n_k, so the model's M-step on (W_k, n_k) minimises the cost over the model exactly (the
// closed forms), or lowers it from the previous V_k (the iterative ones, started there). Models
// with a shared part (an E letter) couple the components: the update is joint over k.
//
// `cov` holds the K moment-matched Vbar_k (row-major d x d each), replaced by the model's V_k;
// `mass` the n_k. `order` lists the components in the order the M-step sees them: a coupled
// M-step sums over components, and ordering them by their first pooled member makes the result
// independent of the components' labels bit for bit (which the shared trajectories rely on).
//
// An iterative model's M-step (VEI, VEE, EVE, VVE, VEV) runs from its own start (`warm_from`
// empty: identity shapes, or the eigenvectors of sum_k W_k / n_k) to convergence, so that the
// update is a function of the plan alone, as for the closed forms: starts that reach one plan
// share the rest of their trajectory (ReduceOptions::share_trajectories), which makes the
// iterative models cost about what the closed forms do. (Warm-starting from the covariances before
// would save inner rounds but tie every update to its start's history, so no start could share
// another's trajectory; at m = 200 that cost 3-4x the full reduction.) For VEI, VEE and VEV that
// M-step is the global minimum up to its tolerance (the objective is convex in log volumes and log
// shapes, and geodesically convex in VEE's C); EVE and VVE can have several local minima in the
// orientation. So run_start keeps the fresh update only if it does not raise the transport cost;
// otherwise it calls this with `warm_from` the covariances before (K x d x d), whose M-step rounds
// each lower the cost from there. Either way the objective never rises.
struct ModelScatters {
  std::vector<Eigen::MatrixXd> W;
  Eigen::VectorXd n;
};

ModelScatters model_scatters(CovarianceModel model, std::size_t d, const std::vector<double>& mass,
                             const std::vector<std::size_t>& order, const std::vector<double>& cov) {
  const std::size_t K = mass.size();
  const auto D = static_cast<Eigen::Index>(d);
  const bool coupled = covariance_model_is_coupled(model);
  ModelScatters out{{}, Eigen::VectorXd(static_cast<Eigen::Index>(K))};
  for (std::size_t t = 0; t < K; ++t) {
    const std::size_t k = order[t];
    // A model of separate components needs only Vbar_k (W_k / n_k): no products with tiny masses.
    const double scale = coupled ? mass[k] : 1.0;
    out.W.emplace_back(scale * Eigen::Map<const RowMatrix>(cov.data() + k * d * d, D, D));
    out.n[static_cast<Eigen::Index>(t)] = scale;
  }
  return out;
}

std::vector<Eigen::MatrixXd> in_order(std::size_t d, const std::vector<std::size_t>& order, const std::vector<double>& cov) {
  const auto D = static_cast<Eigen::Index>(d);
  std::vector<Eigen::MatrixXd> out;
  for (const std::size_t k : order) out.emplace_back(Eigen::Map<const RowMatrix>(cov.data() + k * d * d, D, D));
  return out;
}

// The M-step's matrices are symmetric bit for bit (constrained_m_step symmetrises them), so their
// column-major storage is their row-major one: copied as it is.
void write_back(std::size_t d, const std::vector<std::size_t>& order, const std::vector<Eigen::MatrixXd>& V,
                std::vector<double>& cov) {
  for (std::size_t t = 0; t < order.size(); ++t) {
    const double* v = V[t].data();
    bool finite = true;
    for (std::size_t i = 0; i < d * d; ++i) finite = finite && std::isfinite(v[i]);
    if (!finite) throw std::runtime_error("dfmr::reduce: the constrained covariance update failed");
    std::copy_n(v, d * d, cov.data() + order[t] * d * d);
  }
}


void constrain(CovarianceModel model, std::size_t d, const std::vector<double>& mass,
               const std::vector<std::size_t>& order, std::vector<double>& cov, const std::vector<double>& warm_from) {
  const ModelScatters s = model_scatters(model, d, mass, order, cov);
  write_back(d, order,
             warm_from.empty() ? constrained_m_step(model, s.W, s.n)
                               : constrained_m_step(model, s.W, s.n, in_order(d, order, warm_from)),
             cov);
}

// A start as a reduced mixture, its covariances as given, under every covariance model. Under a
// model other than full (VVV) the start need not be a member: its first plan is computed for it as
// it is (exactly what the full model does), and the first update, the model's M-step on that plan,
// is a member; from there on every iterate is one and the objective never rises (run_start). The
// start's own objective is not compared with the first update's (it is not a member's). Starts that
// reach the same first plan then share everything from the first update on, so a constrained
// reduction solves one M-step per distinct first plan rather than bringing every start into the
// model (for EEV five eigen-decompositions a start: 100 of the 105 of a reduction of the paper's
// m = 20 estimates).
Reduced from_mixture(const Mixture& f) {
  const std::size_t K = f.n_components(), d = f.dim();
  return make_reduced(K, d, std::vector<double>(f.means().data(), f.means().data() + K * d),
                      std::vector<double>(f.covariance_data(), f.covariance_data() + K * d * d));
}

// C (N x K, row-major): KL(N(mu_n, S_n) || G_k)
//   = 0.5 [ <V_k^-1, S_n> + |L_k^-1 (mu_n - m_k)|^2 - d + log det V_k - log det S_n ],
// O(d^2) per pair given the factorisations of G (the pool's log-dets are precomputed). The
// Mahalanobis terms are taken from the differences mu_n - m_k themselves (never from expanded
// squares, which would cancel catastrophically for far-away means). Every entry C[n, k] is
// computed by the same sequence of operations from pooled component n and reduced component k
// alone, whatever k's position among the reduced components: relabelling the reduced components
// permutes the columns of C bit for bit, which the trajectory sharing in reduce() relies on.
// The pool is swept in chunks of kLanes components; for each chunk every reduced component is
// taken in turn, so that the chunk's rows stay in L1 and each entry's accumulator in a register
// (fixed-length lane loops) rather than in memory. Each entry still sums the same terms in the
// same order: the packed trace c = 0..q-1, then the squares of L^-1 (mu - m) row by row.
DFMR_TARGET_CLONES("arch=x86-64-v4", "arch=x86-64-v3", "default")
void cost(const Pool& pool, const Reduced& G, RowMatrix& C) {
  constexpr std::size_t W = kLanes;
  const std::size_t K = G.K, d = G.d, q = pool.q, N = pool.N;
  C.resize(static_cast<Eigen::Index>(N), static_cast<Eigen::Index>(K));
  std::vector<double> diff(d * W);
  for (std::size_t n0 = 0; n0 < N; n0 += W) {
    const std::size_t nb = std::min(W, N - n0);
    for (std::size_t k = 0; k < K; ++k) {
      const double* P = G.packed_prec.data() + k * q;
      double acc[W], y[W];
#pragma omp simd
      for (std::size_t b = 0; b < W; ++b) acc[b] = 0.0;
      const double* S = pool.packed_cov.data() + n0 * q;
      for (std::size_t c = 0; c < q; ++c, S += W) {
        const double p = P[c];
#pragma omp simd
        for (std::size_t b = 0; b < W; ++b) acc[b] += p * S[b];
      }
      const double* m = G.mean.data() + k * d;
      for (std::size_t i = 0; i < d; ++i) {
        const double* mu = pool.mean.data() + n0 * d + i * W;
        double* di = diff.data() + i * W;
        const double mi = m[i];
#pragma omp simd
        for (std::size_t b = 0; b < W; ++b) di[b] = mu[b] - mi;
      }
      const double* Linv = G.chol_inv[k].data();
      for (std::size_t i = 0; i < d; ++i) {
#pragma omp simd
        for (std::size_t b = 0; b < W; ++b) y[b] = 0.0;
        for (std::size_t j = 0; j <= i; ++j) {
          const double l = Linv[i * d + j];
          const double* dj = diff.data() + j * W;
#pragma omp simd
          for (std::size_t b = 0; b < W; ++b) y[b] += l * dj[b];
        }
#pragma omp simd
        for (std::size_t b = 0; b < W; ++b) acc[b] += y[b] * y[b];
      }
      const double shift = G.log_det[k] - static_cast<double>(d);
      const double* ld = pool.log_det.data() + n0;
#pragma omp simd
      for (std::size_t b = 0; b < W; ++b) acc[b] = 0.5 * ((acc[b] + shift) - ld[b]);
      double* out = C.data() + n0 * K + k;
      for (std::size_t b = 0; b < nb; ++b) out[b * K] = acc[b];
    }
  }
}

// The group of a row of the transport plan: the one column holding all of its mass, or one of:
constexpr std::uint32_t kNoGroup = 0xffffffffu;     // no mass (trimmed, or a share that underflowed)
constexpr std::uint32_t kSplitGroup = 0xfffffffeu;  // mass split over several columns (exact cost ties)

// Scratch space of assign(), kept by each start across its iterations.
struct AssignScratch {
  std::vector<double> best, kept;
  std::vector<std::size_t> order;
};

// Optimal transport plan for fixed G. Plain MR: every pooled component goes wholly to its
// cheapest reduced component (exact ties split equally). Trimmed: only the cheapest pooled
// components up to total weight 1 - trim are transported. Returns the objective. Every row of pi
// is written once, from its row of C (the minimum, as std::min_element finds it, and its ties),
// and its group (see kNoGroup) with it.
double assign(const Mixture& pool, const RowMatrix& C, std::size_t K, double trim, std::vector<double>& pi,
              std::vector<std::uint32_t>& group, AssignScratch& scratch) {
  const std::size_t N = pool.n_components();
  const double* w = pool.weights().data();
  pi.resize(N * K);
  group.resize(N);
  auto row_min = [&](std::size_t n) {
    const double* row = C.data() + n * K;
    double b = row[0];
    for (std::size_t k = 1; k < K; ++k)
      if (row[k] < b) b = row[k];
    if (!std::isfinite(b)) throw std::runtime_error("dfmr::reduce: non-finite KL cost");
    return b;
  };
  // Row n of pi: mass `kept` split equally over the entries of row n of C equal to `best`.
  auto write_row = [&](std::size_t n, double kept, double best) {
    const double* row = C.data() + n * K;
    double* out = pi.data() + n * K;
    if (!(kept > 0.0)) {
      std::fill(out, out + K, 0.0);
      group[n] = kNoGroup;
      return;
    }
    std::size_t ties = 0, g = 0;
    for (std::size_t k = 0; k < K; ++k)
      if (row[k] == best) ++ties, g = k;
    const double share = kept / static_cast<double>(ties);
    for (std::size_t k = 0; k < K; ++k) out[k] = row[k] == best ? share : 0.0;
    group[n] = !(share > 0.0) ? kNoGroup : ties > 1 ? kSplitGroup : static_cast<std::uint32_t>(g);
  };
  double objective = 0.0;
  if (!(trim > 0.0)) {
    for (std::size_t n = 0; n < N; ++n) {
      const double best = row_min(n);
      write_row(n, w[n], best);
      if (w[n] > 0.0) objective += w[n] * best;
    }
    return objective;
  }
  std::vector<double>& best = scratch.best;
  std::vector<double>& kept = scratch.kept;
  std::vector<std::size_t>& order = scratch.order;
  best.resize(N);
  for (std::size_t n = 0; n < N; ++n) best[n] = row_min(n);
  kept.assign(w, w + N);
  order.resize(N);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return best[a] < best[b]; });
  // `room` shrinks by repeated subtraction; what is left of it after the boundary component
  // is rounding (a few ulps), not mass to transport.
  double room = 1.0 - trim;
  const double crumb = 64.0 * std::numeric_limits<double>::epsilon() * room;
  for (std::size_t n : order) {
    const double take = room > crumb ? std::min(kept[n], room) : 0.0;
    room -= take;
    kept[n] = take;
  }
  for (std::size_t n = 0; n < N; ++n) {
    write_row(n, kept[n], best[n]);
    if (kept[n] > 0.0) objective += kept[n] * best[n];
  }
  return objective;
}

// The transport cost sum_nk pi_nk C[n, k] of the plan pi (K columns) for the mixture that update()
// made of it, whose cost matrix C has a column for each column of pi that receives mass, in order.
// Summed row by row in pool order as assign() sums its objective, so that a mixture whose cost
// matrix is the one the plan came from gives that objective bit for bit.
double plan_cost(const std::vector<double>& pi, const std::vector<std::uint32_t>& group, std::size_t K, std::size_t kept,
                 const RowMatrix& C) {
  const std::size_t N = group.size();
  std::vector<std::size_t> column(K, K);
  std::vector<bool> used(K, false);
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t k = 0; k < K; ++k)
      if (pi[n * K + k] > 0.0) used[k] = true;
  for (std::size_t k = 0, c = 0; k < K; ++k)
    if (used[k]) column[k] = c++;
  if (static_cast<std::size_t>(C.cols()) != kept) throw std::logic_error("dfmr::reduce: plan and mixture disagree");
  double total = 0.0;
  for (std::size_t n = 0; n < N; ++n) {
    const std::uint32_t g = group[n];
    if (g == kNoGroup) continue;
    if (g != kSplitGroup) {
      total += pi[n * K + g] * C(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(column[g]));
      continue;
    }
    for (std::size_t k = 0; k < K; ++k)
      if (pi[n * K + k] > 0.0) total += pi[n * K + k] * C(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(column[k]));
  }
  return total;
}

// The constrained part of update() (see constrain()): the kept components' masses, their order by
// first pooled member, and with `warm` the previous covariances of the kept components as the start.
void constrain_update(const Pool& pool, const std::vector<double>& pi, const std::vector<std::uint32_t>& group,
                      std::size_t K, CovarianceModel model, const Reduced& previous, const double* mass,
                      std::vector<double>& cov, bool warm) {
  const std::size_t N = pool.N, d = pool.d;
  std::vector<std::size_t> first(K, N), index(K, K);  // first member; position among the kept
  for (std::size_t n = 0; n < N; ++n) {
    const std::uint32_t g = group[n];
    if (g == kNoGroup) continue;
    for (std::size_t k = g == kSplitGroup ? 0 : g; k < (g == kSplitGroup ? K : g + 1); ++k)
      if (pi[n * K + k] > 0.0 && first[k] == N) first[k] = n;
  }
  std::vector<double> masses, before;
  for (std::size_t k = 0; k < K; ++k) {
    if (!(mass[k] > 0.0)) continue;
    index[k] = masses.size();
    masses.push_back(mass[k]);
    if (warm)
      before.insert(before.end(), previous.cov.begin() + static_cast<std::ptrdiff_t>(k * d * d),
                    previous.cov.begin() + static_cast<std::ptrdiff_t>((k + 1) * d * d));
  }
  std::vector<std::size_t> by_first;
  for (std::size_t k = 0; k < K; ++k)
    if (index[k] < K) by_first.push_back(k);
  std::sort(by_first.begin(), by_first.end(), [&](std::size_t a, std::size_t b) { return first[a] < first[b]; });
  for (std::size_t& k : by_first) k = index[k];
  constrain(model, d, masses, by_first, cov, before);
}

// Scratch space of update(), kept by each start across its iterations.
struct UpdateScratch {
  std::vector<double> sums;   // K masses, K means, K packed covariances, one difference
  std::vector<double> share;  // N: pi_nk / mass_k of a component wholly in group k
};

// S += share (Sn + r r^T) on packed lower triangles: entry (i, j) as in the moment match. Always
// inlined into update(), whose clone's target decides the contraction into FMA.
DFMR_ALWAYS_INLINE inline void add_outer(double* __restrict S, const double* __restrict Sn, const double* __restrict r, double share,
                      std::size_t d) {
  for (std::size_t i = 0, c = 0; i < d; c += ++i)
    for (std::size_t j = 0; j <= i; ++j) S[c + j] += share * (Sn[c + j] + r[i] * r[j]);
}

// Moment-matched Gaussians of the transported mass; components receiving none are dropped. Each
// group's sums run over its members in pool order; all groups are accumulated in the same sweeps
// over the pool (the masses, then the means, then the covariances from the packed lower
// triangles), so that the pool is streamed once per sweep rather than gathered group by group.
DFMR_TARGET_CLONES("arch=x86-64-v4", "arch=x86-64-v3", "default")
Reduced update(const Pool& pool, const std::vector<double>& pi, const std::vector<std::uint32_t>& groups, std::size_t K,
               UpdateScratch& scratch, CovarianceModel model, const Reduced& previous, bool warm = false) {
  const std::size_t N = pool.N, d = pool.d, q = pool.q;
  const double* mu = pool.mixture.means().data();
  scratch.sums.assign(K * (1 + d + q) + d, 0.0);
  scratch.share.resize(N);
  double* mass = scratch.sums.data();
  double* means = mass + K;
  double* covs = means + K * d;
  double* r = covs + K * q;
  double* share = scratch.share.data();
  const std::uint32_t* group = groups.data();
  // Only the members of a group (pi > 0) are added to its mass; the others would add +0.
  for (std::size_t n = 0; n < N; ++n) {
    const double* row = pi.data() + n * K;
    const std::uint32_t g = group[n];
    if (g == kNoGroup) continue;
    if (g != kSplitGroup) {
      mass[g] += row[g];
      continue;
    }
    for (std::size_t k = 0; k < K; ++k)
      if (row[k] > 0.0) mass[k] += row[k];
  }
  // Relative shares q_n = pi_nk / mass (summing to 1) rather than the raw masses: products of a
  // subnormal mass with a small mean or covariance entry would underflow to zero and leave a
  // singular (even zero) moment-matched covariance.
  for (std::size_t n = 0; n < N; ++n) {
    const double* row = pi.data() + n * K;
    const double* mn = mu + n * d;
    const std::uint32_t g = group[n];
    if (g == kNoGroup) continue;
    for (std::size_t k = g == kSplitGroup ? 0 : g; k < (g == kSplitGroup ? K : g + 1); ++k) {
      if (!(row[k] > 0.0)) continue;
      const double s = row[k] / mass[k];
      share[n] = s;
      double* m = means + k * d;
      for (std::size_t i = 0; i < d; ++i) m[i] += s * mn[i];
    }
  }
  for (std::size_t n = 0; n < N; ++n) {
    const double* row = pi.data() + n * K;
    const double* mn = mu + n * d;
    const double* Sn = pool.packed.data() + n * q;
    const std::uint32_t g = group[n];
    if (g == kNoGroup) continue;
    if (g != kSplitGroup) {
      const double* m = means + g * d;
      for (std::size_t i = 0; i < d; ++i) r[i] = mn[i] - m[i];
      add_outer(covs + g * q, Sn, r, share[n], d);
      continue;
    }
    for (std::size_t k = 0; k < K; ++k) {
      if (!(row[k] > 0.0)) continue;
      const double* m = means + k * d;
      for (std::size_t i = 0; i < d; ++i) r[i] = mn[i] - m[i];
      add_outer(covs + k * q, Sn, r, row[k] / mass[k], d);
    }
  }
  std::vector<double> mean, cov;
  std::size_t kept = 0;
  for (std::size_t k = 0; k < K; ++k) {
    if (!(mass[k] > 0.0)) continue;
    mean.insert(mean.end(), means + k * d, means + (k + 1) * d);
    const std::size_t at = cov.size();
    cov.resize(at + d * d);
    const double* S = covs + k * q;
    for (std::size_t i = 0, c = 0; i < d; ++i)
      for (std::size_t j = 0; j <= i; ++j, ++c) cov[at + i * d + j] = cov[at + j * d + i] = S[c];
    ++kept;
  }
  if (!unconstrained(model)) constrain_update(pool, pi, groups, K, model, previous, mass, cov, warm);
  return make_reduced(kept, d, std::move(mean), std::move(cov));
}

bool same_parameters(const Mixture& f, const Mixture& g) {
  const std::size_t K = f.n_components(), d = f.dim();
  return K == g.n_components() && d == g.dim() && f.weights() == g.weights() && f.means() == g.means() &&
         std::equal(f.covariance_data(), f.covariance_data() + K * d * d, g.covariance_data());
}

double relative_decrease(double previous, double next) {
  return (previous - next) / std::max({previous, next, 1.0});
}

// ---------------------------------------------------------------- shared trajectories
//
// Given the transport plan pi_t of step t, the rest of a start's run is determined: G_{t+1} is the
// moment match of the groups of pi_t (summed in pool order, so bit for bit the same under any
// relabelling of the groups), the cost and plan of step t+1 depend only on G_{t+1} (see cost()),
// and the stopping rule compares the objectives of consecutive steps. So when start B at step j
// reaches, up to relabelling, the plan that an earlier-indexed start A reached at a step t < T_A
// (A's final step), B's step j+1 reproduces A's step t+1 exactly (objective trace_A[t+1]); B's own
// stopping test at j+1 compares obj_B(j) with trace_A[t+1]; if B goes on, every later test is one
// of A's, so B stops at step e = j + T_A - t with A's final objective and convergence flag, as long
// as the budget gets it there (e <= max_iter, and e == max_iter when A stopped on the budget). Such
// a B is cut short at step j: its final objective equals A's and its index is higher, so it can
// never win the best-start selection (ties go to the lowest index), and the result is bit-identical
// to running it in full. A plan with split ties is never shared (it is not a partition).

// A plan as a partition: the group of every pooled component, groups numbered by first
// occurrence (kUntransported: no mass, trimmed), and the components transported only in part.
struct State {
  static constexpr std::uint8_t kUntransported = 255;
  std::vector<std::uint8_t> labels;
  std::vector<std::pair<std::size_t, double>> partial;  // (n, transported mass) when below w_n
  std::size_t hash = 0;
};

// False when a row of pi splits its mass (exact cost ties): such a plan is not shared. `group`
// holds the group of every row of pi (see assign()).
bool canonical_state(const std::vector<double>& pi, const std::vector<std::uint32_t>& group, const Eigen::VectorXd& w,
                     std::size_t K, State& out) {
  const std::size_t N = static_cast<std::size_t>(w.size());
  if (K >= State::kUntransported) return false;
  out.labels.resize(N);
  out.partial.clear();
  std::uint8_t renamed[State::kUntransported];
  std::fill(renamed, renamed + K, State::kUntransported);
  std::uint8_t groups = 0;
  for (std::size_t n = 0; n < N; ++n) {
    const std::uint32_t k = group[n];
    if (k == kSplitGroup) return false;
    if (k == kNoGroup) {
      out.labels[n] = State::kUntransported;
      continue;
    }
    if (renamed[k] == State::kUntransported) renamed[k] = groups++;
    out.labels[n] = renamed[k];
    const double v = pi[n * K + k];
    if (v != w[static_cast<Eigen::Index>(n)]) out.partial.emplace_back(n, v);
  }
  const std::string_view bytes(reinterpret_cast<const char*>(out.labels.data()), N);
  out.hash = std::hash<std::string_view>{}(bytes);
  for (const auto& [n, v] : out.partial) out.hash = out.hash * 1000003u ^ (n + std::hash<double>{}(v));
  return true;
}

// How a start ended: its whole objective trace (for a cut start, its own steps followed by those
// of the start it joined, exactly what running it in full would have given).
struct Outcome {
  bool finished = false;
  std::vector<double> trace;
  int n_iter = 0;
  bool converged = false;
  std::vector<double> fresh_cost;  // iterative models: see run_start (empty for the others)
};

// The plans visited by the starts so far, and how finished starts ended. Thread-safe: starts
// running concurrently record and look up under one mutex. A start is only cut against a finished
// start of lower index, so the results never depend on thread timing (only how many starts are
// cut can). The recorded plans take at most `budget` bytes (labels, one byte per pooled
// component); beyond it nothing new is recorded, which only means fewer cuts.
class Trajectories {
 public:
  Trajectories(std::size_t n_starts, std::size_t budget) : outcomes_(n_starts), budget_(budget) {}

  // Start s is at step j (< max_iter) with plan `state` and objective trace `trace` (length j+1),
  // and did not stop at j. Returns true and fills `out` when s can be cut (see above); otherwise
  // records the plan (when it is new and fits the budget) and returns false.
  bool join(std::size_t s, int j, const State& state, const std::vector<double>& trace,
            const std::vector<double>& fresh_cost, const ReduceOptions& opt, Outcome& out) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& bucket = records_[state.hash];
    for (const Record& rec : bucket) {
      if (!same(rec, state)) continue;
      if (rec.start >= s) return false;  // known, but not from an earlier start
      const Outcome& a = outcomes_[rec.start];
      if (!a.finished || rec.step + 1 >= a.n_iter) return false;
      const double next = a.trace[static_cast<std::size_t>(rec.step) + 1];
      // Under a constrained model a start's first update is neither tested for convergence nor
      // guarded (see run_start): s at j = 0 goes on to step 2 and takes the fresh M-step.
      const bool first = j == 0 && !unconstrained(opt.model);
      if (!first && relative_decrease(trace.back(), next) < opt.tol) return false;  // s stops at j + 1 by itself
      // Iterative models: s's update keeps the fresh M-step (the one a's took) only if its cost
      // under the plan is at most s's objective now (at its first update, always); NaN (a fell
      // back) never joins.
      const bool guarded = covariance_model_is_iterative(opt.model);
      const double fresh = guarded ? a.fresh_cost[static_cast<std::size_t>(rec.step)] : 0.0;
      if (guarded && (first ? std::isnan(fresh) : !(fresh <= trace.back()))) return false;
      const int end = j + a.n_iter - rec.step;
      if (end > opt.max_iter || (!a.converged && end != opt.max_iter)) return false;
      out.trace = trace;
      out.trace.insert(out.trace.end(), a.trace.begin() + rec.step + 1, a.trace.end());
      out.n_iter = end;
      out.converged = a.converged;
      if (guarded) {
        out.fresh_cost = fresh_cost;
        out.fresh_cost.insert(out.fresh_cost.end(), a.fresh_cost.begin() + rec.step, a.fresh_cost.end());
      }
      out.finished = true;
      outcomes_[s] = out;
      return true;
    }
    if (used_ + state.labels.size() <= budget_) {
      used_ += state.labels.size();
      bucket.push_back(Record{s, j, state.labels, state.partial});
    }
    return false;
  }

  void finish(std::size_t s, Outcome outcome) {
    std::lock_guard<std::mutex> lock(mutex_);
    outcome.finished = true;
    outcomes_[s] = std::move(outcome);
  }

 private:
  struct Record {
    std::size_t start;
    int step;
    std::vector<std::uint8_t> labels;
    std::vector<std::pair<std::size_t, double>> partial;
  };
  static bool same(const Record& r, const State& s) { return r.labels == s.labels && r.partial == s.partial; }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<Record>> records_;
  std::vector<Outcome> outcomes_;
  std::size_t budget_, used_ = 0;
};

struct Run {
  Reduced G;
  std::vector<double> pi, trace;
  std::vector<std::uint32_t> group;  // of every row of pi (see assign())
  double objective = 0.0;
  int n_iter = 0;
  bool converged = false;
  bool last_step_pending = false;  // stopped at a fixed point: G and pi are one step behind
  // At the fixed point: pi_t equals, entry for entry and label for label, the plan pi_{t-1} that G
  // came from, so the pending step would reproduce G and pi bit for bit (see take_pending_step).
  bool pending_step_is_identity = false;
  std::vector<double> fresh_cost;  // iterative models: per update, the fresh update's cost (NaN: fell back)
};

// The step that confirms a fixed point: G_{t+1} = update(pi_t) and its plan. When pi_t equals
// pi_{t-1} up to relabelling, G_{t+1} is G_t relabelled (see the note on shared trajectories), so
// C_{t+1} is C_t with its columns permuted and obj_{t+1} = obj_t bit for bit: the relative decrease
// is 0 and, with tol > 0, the start stops at t+1 without computing it. Only the winning start needs
// its final G and plan; this computes them, as running that step would have.
//
// When the plans are equal entry for entry (the usual case: G_t inherits the labels of the plan it
// came from, and pi_t = assign(G_t) keeps them), the update's inputs are the ones G_t came from, so
// G_{t+1} = G_t and pi_{t+1} = pi_t bit for bit, and the step is skipped: for the iterative models
// it is a converged M-step from scratch (EVE and VVE: dozens of orientation sweeps), a sixth of a
// reduction of the paper's m = 20 estimates.
void take_pending_step(const Pool& pool, const ReduceOptions& opt, Run& r) {
  if (r.pending_step_is_identity) {
    r.last_step_pending = false;
    return;
  }
  RowMatrix C;
  AssignScratch assigned;
  UpdateScratch scratch;
  r.G = update(pool, r.pi, r.group, r.G.K, scratch, opt.model, r.G);
  cost(pool, r.G, C);
  if (assign(pool.mixture, C, r.G.K, opt.trim, r.pi, r.group, assigned) != r.objective)
    throw std::logic_error("dfmr::reduce: a fixed point did not reproduce its objective");
  r.last_step_pending = false;
}

// Runs start s; returns nothing when it was cut short by joining an earlier start's trajectory
// (then `cut` holds its outcome), else the run. With share_trajectories, a start whose plan repeats
// stops at once (see take_pending_step).
std::optional<Run> run_start(const Pool& pool, const Mixture& start, std::size_t s, const ReduceOptions& opt,
                             Trajectories* shared, Outcome& cut) {
  Run r;
  r.G = from_mixture(start);
  RowMatrix C;
  AssignScratch assigned;
  UpdateScratch scratch;
  State state, previous;
  bool known = false, known_before = false;
  // The plan (and groups) the last update came from: a fixed point whose plan equals it exactly
  // needs no pending step (see take_pending_step).
  std::vector<double> updated_from;
  std::vector<std::uint32_t> updated_from_group;
  cost(pool, r.G, C);
  r.objective = assign(pool.mixture, C, r.G.K, opt.trim, r.pi, r.group, assigned);
  r.trace.push_back(r.objective);
  // Iterative models (see constrain()): the fresh update is kept only if the transport cost of its
  // mixture under the plan it came from does not exceed the objective before; otherwise the update
  // runs the M-step from the covariances before. That cost is recorded per step (NaN after a
  // fallback), so that a start joins another's trajectory only where its own update would have
  // been the fresh one too, and a plan after a fallback is no fixed point.
  const bool guarded = covariance_model_is_iterative(opt.model);
  // Under a constrained model the start is taken as given (see from_mixture): the first update is
  // the first member of the model, so it is neither compared with the start's objective (the guard
  // below accepts it unconditionally: there is no member before it to keep) nor tested for
  // convergence against it (a constrained update usually costs more than an unconstrained start).
  const bool member_start = unconstrained(opt.model);
  for (int it = 1; it <= opt.max_iter; ++it) {
    if (opt.share_trajectories) {
      known = canonical_state(r.pi, r.group, pool.mixture.weights(), r.G.K, state);
      if (known && known_before && opt.tol > 0.0 && state.labels == previous.labels &&
          state.partial == previous.partial) {
        r.trace.push_back(r.objective);
        r.n_iter = it;
        r.converged = true;
        r.last_step_pending = true;
        r.pending_step_is_identity = r.pi == updated_from && r.group == updated_from_group;
        break;
      }
      if (known && shared && shared->join(s, it - 1, state, r.trace, r.fresh_cost, opt, cut)) return std::nullopt;
      std::swap(state, previous);
      known_before = known;
    }
    if (!guarded) {
      r.G = update(pool, r.pi, r.group, r.G.K, scratch, opt.model, r.G);
      cost(pool, r.G, C);
    } else {
      Reduced fresh = update(pool, r.pi, r.group, r.G.K, scratch, opt.model, r.G);
      cost(pool, fresh, C);
      const double fresh_cost = plan_cost(r.pi, r.group, r.G.K, fresh.K, C);
      if (it == 1 || fresh_cost <= r.objective) {
        r.G = std::move(fresh);
        r.fresh_cost.push_back(fresh_cost);
      } else {
        // The warm M-step's rounds lower the cost from the covariances before in exact arithmetic;
        // at a fixed point rounding can still raise it by an ulp, and then the mixture before stays
        // (its plan repeats and the run stops), so that the objective never rises.
        Reduced warm = update(pool, r.pi, r.group, r.G.K, scratch, opt.model, r.G, true);
        cost(pool, warm, C);
        if (plan_cost(r.pi, r.group, r.G.K, warm.K, C) <= r.objective)
          r.G = std::move(warm);
        else
          cost(pool, r.G, C);
        r.fresh_cost.push_back(std::numeric_limits<double>::quiet_NaN());
        known_before = false;
      }
    }
    if (opt.share_trajectories) {
      updated_from = r.pi;
      updated_from_group = r.group;
    }
    const double next = assign(pool.mixture, C, r.G.K, opt.trim, r.pi, r.group, assigned);
    r.trace.push_back(next);
    r.n_iter = it;
    const double rel = relative_decrease(r.objective, next);
    r.objective = next;
    if (rel < opt.tol && (it > 1 || member_start)) {
      r.converged = true;
      break;
    }
  }
  if (shared) shared->finish(s, Outcome{true, r.trace, r.n_iter, r.converged, r.fresh_cost});
  return r;
}

// first[s]: the lowest index whose start has exactly the parameters of start s.
std::vector<std::size_t> first_occurrences(const std::vector<Mixture>& starts) {
  std::vector<std::size_t> first(starts.size());
  std::unordered_map<std::size_t, std::vector<std::size_t>> seen;  // parameter hash -> first occurrences
  for (std::size_t s = 0; s < starts.size(); ++s) {
    const Mixture& f = starts[s];
    const std::size_t K = f.n_components(), d = f.dim();
    const std::string_view bytes(reinterpret_cast<const char*>(f.covariance_data()), K * d * d * sizeof(double));
    const std::string_view mean_bytes(reinterpret_cast<const char*>(f.means().data()), K * d * sizeof(double));
    const std::size_t h = std::hash<std::string_view>{}(bytes) ^ (std::hash<std::string_view>{}(mean_bytes) * 31u);
    auto& bucket = seen[h];
    first[s] = s;
    for (std::size_t c : bucket)
      if (same_parameters(starts[c], f)) {
        first[s] = c;
        break;
      }
    if (first[s] == s) bucket.push_back(s);
  }
  return first;
}

void check_options(const ReduceOptions& opt) {
  if (opt.max_iter < 0) throw std::invalid_argument("dfmr::reduce: max_iter must be >= 0");
  if (!(opt.tol >= 0.0)) throw std::invalid_argument("dfmr::reduce: tol must be >= 0");
  if (!(opt.trim >= 0.0 && opt.trim < 1.0)) throw std::invalid_argument("dfmr::reduce: trim must be in [0, 1)");
  if (opt.n_threads < 0) throw std::invalid_argument("dfmr::reduce: n_threads must be >= 0 (0: all hardware threads)");
}

}  // namespace

Eigen::MatrixXd kl_cost(const Mixture& pooled, const Mixture& mixture) {
  if (pooled.dim() != mixture.dim()) throw std::invalid_argument("dfmr::kl_cost: dimensions differ");
  RowMatrix C;
  cost(Pool(pooled), from_mixture(mixture), C);
  return C;
}

ReduceResult reduce(const Mixture& pooled, const std::vector<Mixture>& starts, int n_components,
                    const ReduceOptions& requested) {
  check_options(requested);
  // The model for the pool's dimension (E or V in one dimension).
  ReduceOptions options = requested;
  options.model = covariance_model_for_dim(requested.model, pooled.dim());
  // A start enters a constrained model by its first update (see from_mixture): without one the
  // result would be the start as given, not a member of the model.
  if (!unconstrained(options.model) && options.max_iter < 1)
    throw std::invalid_argument(std::string("dfmr::reduce: max_iter must be >= 1 under covariance model ") +
                                covariance_model_name(options.model) + " (its first update brings the starts into the model)");
  if (n_components < 1) throw std::invalid_argument("dfmr::reduce: n_components must be >= 1");
  if (starts.empty()) throw std::invalid_argument("dfmr::reduce: no starts");
  for (std::size_t s = 0; s < starts.size(); ++s) {
    if (starts[s].dim() != pooled.dim())
      throw std::invalid_argument("dfmr::reduce: start " + std::to_string(s) + " has the wrong dimension");
    if (starts[s].n_components() > static_cast<std::size_t>(n_components))
      throw std::invalid_argument("dfmr::reduce: start " + std::to_string(s) + " has more than n_components components");
  }
  const Pool pool(pooled);
  // Identical starts reach identical ends: each distinct start runs once and its duplicates share
  // its final objective (the first occurrence, having the lowest index, wins any tie).
  const std::vector<std::size_t> first = first_occurrences(starts);
  std::vector<std::size_t> distinct;
  for (std::size_t s = 0; s < starts.size(); ++s)
    if (first[s] == s) distinct.push_back(s);
  // Only the best run so far is kept (its transport plan is N x K): memory does not grow with the
  // number of starts. The order (objective, start index) makes the winner independent of which
  // thread finishes first.
  // Starts that join an earlier start's trajectory are cut short (see Trajectories); the plans
  // recorded for that take at most 16 transport plans' worth of memory (one byte per pooled
  // component and plan): at m = 1,000 (N = 4,000) 799 of 800 DFMR starts are still cut.
  std::vector<double> objectives(starts.size());
  std::vector<int> iterations(starts.size());
  std::optional<Run> best;
  std::size_t win = 0, n_cut = 0;
  std::mutex best_mutex;
  std::optional<Trajectories> shared;
  if (options.share_trajectories && n_components < State::kUntransported && distinct.size() > 1)
    shared.emplace(starts.size(), 16 * pooled.n_components() * static_cast<std::size_t>(n_components) * sizeof(double));
  detail::parallel_for(distinct.size(), options.n_threads, [&](std::size_t t, std::size_t) {
    const std::size_t s = distinct[t];
    Outcome cut;
    std::optional<Run> run = run_start(pool, starts[s], s, options, shared ? &*shared : nullptr, cut);
    std::lock_guard<std::mutex> lock(best_mutex);
    if (!run) {  // its objective is that of an earlier start: it cannot win
      objectives[s] = cut.trace.back();
      iterations[s] = cut.n_iter;
      ++n_cut;
      return;
    }
    objectives[s] = run->objective;
    iterations[s] = run->n_iter;
    if (!best || run->objective < best->objective || (run->objective == best->objective && s < win)) {
      best = std::move(run);
      win = s;
    }
  });
  for (std::size_t s = 0; s < starts.size(); ++s) {
    objectives[s] = objectives[first[s]];
    iterations[s] = iterations[first[s]];
  }
  Run& r = *best;
  if (r.last_step_pending) take_pending_step(pool, options, r);
  // Components that receive no mass in the final assignment are dropped as well.
  const std::size_t N = pooled.n_components(), d = r.G.d;
  const Eigen::Map<const RowMatrix> plan(r.pi.data(), static_cast<Eigen::Index>(N), static_cast<Eigen::Index>(r.G.K));
  const Eigen::VectorXd mass = plan.colwise().sum().transpose();
  std::vector<Eigen::Index> keep;
  for (Eigen::Index k = 0; k < mass.size(); ++k)
    if (mass[k] > 0.0) keep.push_back(k);
  const auto K = static_cast<Eigen::Index>(keep.size());
  Eigen::MatrixXd pi(static_cast<Eigen::Index>(N), K);
  Eigen::VectorXd w(K);
  std::vector<double> mean(keep.size() * d), cov(keep.size() * d * d);
  for (Eigen::Index c = 0; c < K; ++c) {
    const auto k = static_cast<std::size_t>(keep[static_cast<std::size_t>(c)]);
    pi.col(c) = plan.col(keep[static_cast<std::size_t>(c)]);
    w[c] = mass[keep[static_cast<std::size_t>(c)]];
    std::copy_n(r.G.mean.data() + k * d, d, mean.data() + static_cast<std::size_t>(c) * d);
    std::copy_n(r.G.cov.data() + k * d * d, d * d, cov.data() + static_cast<std::size_t>(c) * d * d);
  }
  // Reduced weights: column sums of the plan, rescaled by the transported mass 1 - trim.
  w /= w.sum();
  Mixture mixture(static_cast<std::size_t>(K), d, w.data(), mean.data(), cov.data());
  return ReduceResult{std::move(mixture), r.objective, r.n_iter, r.converged, std::move(r.trace),
                      std::move(pi), static_cast<int>(win), std::move(objectives), std::move(iterations),
                      static_cast<int>(n_cut)};
}

std::vector<Mixture> default_starts(const std::vector<Mixture>& mixtures, int n_components,
                                    const std::vector<double>& n_samples) {
  if (n_components < 1) throw std::invalid_argument("dfmr::default_starts: n_components must be >= 1");
  check_sample_sizes(n_samples, mixtures.size());
  std::vector<Mixture> starts;
  for (const auto& f : mixtures)
    if (f.n_components() == static_cast<std::size_t>(n_components)) starts.push_back(f);
  if (!starts.empty()) return starts;
  const Mixture pooled = pool(mixtures, n_samples);
  const std::size_t N = pooled.n_components(), d = pooled.dim();
  const std::size_t K = std::min<std::size_t>(static_cast<std::size_t>(n_components), N);
  std::vector<std::size_t> chosen;
  Eigen::Index heaviest;
  pooled.weights().maxCoeff(&heaviest);
  chosen.push_back(static_cast<std::size_t>(heaviest));
  std::vector<double> nearest(N, std::numeric_limits<double>::infinity());
  while (chosen.size() < K) {
    const std::size_t c = chosen.back();
    const Mixture single(1, d, std::vector<double>{1.0}.data(), pooled.means().data() + c * d,
                         pooled.covariance_data() + c * d * d);
    const Eigen::MatrixXd C = kl_cost(pooled, single);
    std::size_t far = 0;
    double far_score = 0.0;
    for (std::size_t n = 0; n < N; ++n) {
      nearest[n] = std::min(nearest[n], C(static_cast<Eigen::Index>(n), 0));
      const double score = pooled.weights()[static_cast<Eigen::Index>(n)] * nearest[n];
      if (score > far_score) far_score = score, far = n;
    }
    // Every remaining pooled component coincides with a chosen one: fewer distinct seeds.
    if (!(far_score > 0.0)) break;
    chosen.push_back(far);
  }
  const std::size_t seeds = chosen.size();
  std::vector<double> w(seeds, 1.0 / static_cast<double>(seeds)), mu, cov;
  for (std::size_t c : chosen) {
    mu.insert(mu.end(), pooled.means().data() + c * d, pooled.means().data() + (c + 1) * d);
    cov.insert(cov.end(), pooled.covariance_data() + c * d * d, pooled.covariance_data() + (c + 1) * d * d);
  }
  starts.emplace_back(seeds, d, w.data(), mu.data(), cov.data());
  return starts;
}

ReduceResult reduce_mixtures(const std::vector<Mixture>& mixtures, int n_components, const ReduceOptions& options,
                             const std::vector<double>& n_samples) {
  return reduce(pool(mixtures, n_samples), default_starts(mixtures, n_components, n_samples), n_components, options);
}

}  // namespace dfmr
