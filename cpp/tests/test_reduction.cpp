// Tests of dfmr::kl_cost, dfmr::reduce, dfmr::default_starts and dfmr::reduce_mixtures.
// A reference implementation of the MM iterations (plain and trimmed), written here from the
// specification with Eigen's dense inverse and determinant, checks the optimised core.
#include <dfmr/covariance.hpp>
#include <dfmr/mixture.hpp>
#include <dfmr/reduction.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using dfmr_test::gauss_pdf;
using dfmr_test::kPi;
using dfmr_test::random_spd;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Gauss {
  VectorXd mu;
  MatrixXd S;
};

std::vector<Gauss> components(const dfmr::Mixture& f) {
  std::vector<Gauss> out;
  for (std::size_t k = 0; k < f.n_components(); ++k)
    out.push_back({f.means().row(static_cast<Eigen::Index>(k)).transpose(), MatrixXd(f.covariance(k))});
  return out;
}

dfmr::Mixture make_mixture(const VectorXd& w, const std::vector<Gauss>& comps) {
  const auto K = static_cast<Eigen::Index>(comps.size());
  MatrixXd mu(K, comps.front().mu.size());
  std::vector<MatrixXd> cov;
  for (Eigen::Index k = 0; k < K; ++k) {
    mu.row(k) = comps[static_cast<std::size_t>(k)].mu.transpose();
    cov.push_back(comps[static_cast<std::size_t>(k)].S);
  }
  return dfmr::Mixture(w, mu, cov);
}

// KL(N(m1, S1) || N(m2, S2)) = 0.5 [ tr(S2^-1 S1) + (m2-m1)^T S2^-1 (m2-m1) - d + log det S2 - log det S1 ].
double kl(const Gauss& a, const Gauss& b) {
  const MatrixXd P = b.S.inverse();
  const VectorXd r = b.mu - a.mu;
  return 0.5 * ((P * a.S).trace() + r.dot(P * r) - static_cast<double>(a.mu.size()) +
                std::log(b.S.determinant()) - std::log(a.S.determinant()));
}

MatrixXd reference_cost(const std::vector<Gauss>& pool, const std::vector<Gauss>& G) {
  MatrixXd C(static_cast<Eigen::Index>(pool.size()), static_cast<Eigen::Index>(G.size()));
  for (std::size_t n = 0; n < pool.size(); ++n)
    for (std::size_t k = 0; k < G.size(); ++k)
      C(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(k)) = kl(pool[n], G[k]);
  return C;
}

// Optimal plan for fixed costs: every pooled component goes wholly to its cheapest column
// (ties split equally); with trimming, only the cheapest components up to mass 1 - trim.
double reference_assign(const MatrixXd& C, const VectorXd& w, double trim, MatrixXd& pi) {
  const Eigen::Index N = C.rows(), K = C.cols();
  const VectorXd best = C.rowwise().minCoeff();
  VectorXd kept = w;
  if (trim > 0.0) {
    std::vector<Eigen::Index> order(static_cast<std::size_t>(N));
    std::iota(order.begin(), order.end(), Eigen::Index{0});
    std::stable_sort(order.begin(), order.end(), [&](Eigen::Index a, Eigen::Index b) { return best(a) < best(b); });
    double room = 1.0 - trim;
    for (Eigen::Index n : order) {
      kept(n) = std::clamp(room, 0.0, w(n));
      room -= kept(n);
    }
  }
  pi = MatrixXd::Zero(N, K);
  for (Eigen::Index n = 0; n < N; ++n) {
    const auto ties = static_cast<double>((C.row(n).array() == best(n)).count());
    for (Eigen::Index k = 0; k < K; ++k)
      if (C(n, k) == best(n)) pi(n, k) = kept(n) / ties;
  }
  return kept.dot(best);
}

// Moment-matched Gaussians of the columns of pi that carry mass.
std::vector<Gauss> moment_match(const std::vector<Gauss>& pool, const MatrixXd& pi) {
  std::vector<Gauss> G;
  for (Eigen::Index k = 0; k < pi.cols(); ++k) {
    const double mass = pi.col(k).sum();
    if (!(mass > 0.0)) continue;
    const Eigen::Index d = pool.front().mu.size();
    VectorXd mu = VectorXd::Zero(d);
    for (std::size_t n = 0; n < pool.size(); ++n) mu += pi(static_cast<Eigen::Index>(n), k) * pool[n].mu;
    mu /= mass;
    MatrixXd S = MatrixXd::Zero(d, d);
    for (std::size_t n = 0; n < pool.size(); ++n) {
      const VectorXd r = pool[n].mu - mu;
      S += pi(static_cast<Eigen::Index>(n), k) * (pool[n].S + r * r.transpose());
    }
    G.push_back({mu, S / mass});
  }
  return G;
}

struct Reference {
  std::vector<Gauss> G;
  VectorXd w;
  MatrixXd pi;
  std::vector<double> trace;
  int n_iter = 0;
  bool converged = false;
};

Reference reference_reduce(const dfmr::Mixture& pooled, const dfmr::Mixture& start, double trim,
                           int max_iter = 100, double tol = 1e-5) {
  const std::vector<Gauss> pool = components(pooled);
  Reference r;
  r.G = components(start);
  double obj = reference_assign(reference_cost(pool, r.G), pooled.weights(), trim, r.pi);
  r.trace.push_back(obj);
  for (int it = 1; it <= max_iter; ++it) {
    r.G = moment_match(pool, r.pi);
    const double next = reference_assign(reference_cost(pool, r.G), pooled.weights(), trim, r.pi);
    r.trace.push_back(next);
    r.n_iter = it;
    const double rel = (obj - next) / std::max({obj, next, 1.0});
    obj = next;
    if (rel < tol) {
      r.converged = true;
      break;
    }
  }
  r.w = r.pi.colwise().sum().transpose();
  r.w /= r.w.sum();
  return r;
}

// A K-component population in d dimensions with well separated means.
struct Population {
  VectorXd w;
  std::vector<Gauss> comps;
};

Population make_population(std::mt19937& rng, int K, int d) {
  std::normal_distribution<double> z(0.0, 1.0);
  Population p;
  p.w = VectorXd::LinSpaced(K, 1.0, 2.0);
  p.w /= p.w.sum();
  for (int k = 0; k < K; ++k) {
    VectorXd mu(d);
    for (int i = 0; i < d; ++i) mu(i) = z(rng);
    mu(k % d) += 8.0 * (k + 1);
    p.comps.push_back({mu, random_spd(rng, d, 0.5)});
  }
  return p;
}

// One machine's local estimate: perturbed parameters, labels in a random order; a Byzantine
// machine additionally moves every mean far away.
dfmr::Mixture local_estimate(std::mt19937& rng, const Population& p, bool byzantine) {
  std::normal_distribution<double> z(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.8, 1.2);
  const auto K = static_cast<int>(p.comps.size());
  const auto d = static_cast<int>(p.comps.front().mu.size());
  std::vector<int> perm(static_cast<std::size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  VectorXd w(K);
  std::vector<Gauss> comps;
  for (int k = 0; k < K; ++k) {
    const Gauss& src = p.comps[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])];
    w(k) = p.w(perm[static_cast<std::size_t>(k)]) * u(rng);
    VectorXd mu = src.mu;
    for (int i = 0; i < d; ++i) mu(i) += 0.3 * z(rng) + (byzantine ? 60.0 : 0.0);
    comps.push_back({mu, src.S + 0.1 * random_spd(rng, d, 0.0)});
  }
  return make_mixture(w / w.sum(), comps);
}

std::vector<dfmr::Mixture> local_estimates(unsigned seed, int m, int n_byzantine, int K = 3, int d = 3) {
  std::mt19937 rng(seed);
  const Population p = make_population(rng, K, d);
  std::vector<dfmr::Mixture> out;
  for (int i = 0; i < m; ++i) out.push_back(local_estimate(rng, p, i < n_byzantine));
  return out;
}

dfmr::Mixture permuted(const dfmr::Mixture& f, const std::vector<std::size_t>& perm) {
  const std::vector<Gauss> c = components(f);
  std::vector<Gauss> out;
  VectorXd w(static_cast<Eigen::Index>(perm.size()));
  for (std::size_t k = 0; k < perm.size(); ++k) {
    out.push_back(c[perm[k]]);
    w(static_cast<Eigen::Index>(k)) = f.weights()(static_cast<Eigen::Index>(perm[k]));
  }
  return make_mixture(w, out);
}

double rel_diff(const MatrixXd& a, const MatrixXd& b) { return (a - b).norm() / std::max(1.0, b.norm()); }

// Matching components of two mixtures up to their order (nearest mean).
void expect_same_mixture(const dfmr::Mixture& a, const dfmr::Mixture& b, double rel) {
  ASSERT_EQ(a.n_components(), b.n_components());
  ASSERT_EQ(a.dim(), b.dim());
  const std::vector<Gauss> ca = components(a), cb = components(b);
  std::vector<bool> used(cb.size(), false);
  for (std::size_t i = 0; i < ca.size(); ++i) {
    std::size_t j_best = cb.size();
    double best = std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < cb.size(); ++j)
      if (!used[j] && (ca[i].mu - cb[j].mu).norm() < best) best = (ca[i].mu - cb[j].mu).norm(), j_best = j;
    ASSERT_LT(j_best, cb.size());
    used[j_best] = true;
    EXPECT_LE(rel_diff(ca[i].mu, cb[j_best].mu), rel) << "component " << i;
    EXPECT_LE(rel_diff(ca[i].S, cb[j_best].S), rel) << "component " << i;
    EXPECT_NEAR(a.weights()(static_cast<Eigen::Index>(i)), b.weights()(static_cast<Eigen::Index>(j_best)), rel)
        << "component " << i;
  }
}

dfmr::ReduceOptions with_trim(double trim) {
  dfmr::ReduceOptions opt;
  opt.trim = trim;
  return opt;
}

const std::vector<unsigned> kSeeds{1, 2, 3, 4, 5};

// ------------------------------------------------------------------------ kl_cost

TEST(KlCost, MatchesDirectFormula) {
  for (unsigned seed : kSeeds) {
    for (int d : {1, 4, 10}) {
      const std::vector<dfmr::Mixture> fs = local_estimates(seed, 3, 0, 3, d);
      const dfmr::Mixture pooled = dfmr::pool(fs);
      const MatrixXd C = dfmr::kl_cost(pooled, fs[1]);
      const MatrixXd R = reference_cost(components(pooled), components(fs[1]));
      ASSERT_EQ(C.rows(), 9);
      ASSERT_EQ(C.cols(), 3);
      for (Eigen::Index n = 0; n < 9; ++n)
        for (Eigen::Index k = 0; k < 3; ++k) EXPECT_NEAR(C(n, k), R(n, k), 1e-10 * std::max(1.0, R(n, k)));
      // A component has zero divergence from itself.
      for (Eigen::Index k = 0; k < 3; ++k) EXPECT_NEAR(C(3 + k, k), 0.0, 1e-12);
    }
  }
}

// Diagonal reduced covariances take a shortcut in the factorisation (1 / sqrt of the diagonal, no
// triangular solve): against KL's closed form for a diagonal target, 0.5 [sum_i (S_ii + r_i^2) / v_i - d
// + sum_i log v_i - log det S], next to a full component (the general path) in the same mixture.
TEST(KlCost, DiagonalComponentsMatchTheDiagonalFormula) {
  for (unsigned seed : kSeeds) {
    for (int d : {2, 10}) {
      const std::vector<dfmr::Mixture> fs = local_estimates(seed, 3, 0, 3, d);
      const dfmr::Mixture pooled = dfmr::pool(fs);
      std::vector<MatrixXd> cov;
      for (std::size_t k = 0; k < 3; ++k) cov.push_back(fs[1].covariance(k));
      for (std::size_t k = 0; k < 2; ++k) cov[k] = MatrixXd(cov[k].diagonal().asDiagonal());
      const dfmr::Mixture target(fs[1].weights(), fs[1].means(), cov);
      const MatrixXd C = dfmr::kl_cost(pooled, target);
      const MatrixXd R = reference_cost(components(pooled), components(target));
      for (Eigen::Index n = 0; n < 9; ++n) {
        const VectorXd mu = pooled.means().row(n).transpose();
        const MatrixXd S = pooled.covariance(static_cast<std::size_t>(n));
        for (Eigen::Index k = 0; k < 3; ++k) {
          EXPECT_NEAR(C(n, k), R(n, k), 1e-10 * std::max(1.0, R(n, k)));
          if (k == 2) continue;
          const VectorXd v = cov[static_cast<std::size_t>(k)].diagonal();
          const VectorXd r = mu - target.means().row(k).transpose();
          const double kl = 0.5 * ((S.diagonal().array() + r.array().square()) / v.array()).sum() - 0.5 * d +
                            0.5 * (v.array().log().sum() - std::log(S.determinant()));
          EXPECT_NEAR(C(n, k), kl, 1e-12 * std::max(1.0, kl)) << "seed " << seed << ", d " << d;
        }
      }
    }
  }
}

TEST(KlCost, OneDimensionalClosedForm) {
  const std::vector<double> w{0.5, 0.5}, m{-1.0, 2.0}, v{0.5, 3.0};
  const dfmr::Mixture f(2, 1, w.data(), m.data(), v.data());
  const MatrixXd C = dfmr::kl_cost(f, f);
  for (Eigen::Index a = 0; a < 2; ++a)
    for (Eigen::Index b = 0; b < 2; ++b) {
      const double r = m[static_cast<std::size_t>(b)] - m[static_cast<std::size_t>(a)];
      const double va = v[static_cast<std::size_t>(a)], vb = v[static_cast<std::size_t>(b)];
      EXPECT_NEAR(C(a, b), 0.5 * (va / vb + r * r / vb - 1.0 + std::log(vb / va)), 1e-14);
    }
}

TEST(KlCost, RejectsDimensionMismatch) {
  const std::vector<dfmr::Mixture> a = local_estimates(1, 1, 0, 2, 2), b = local_estimates(1, 1, 0, 2, 3);
  EXPECT_THROW(dfmr::kl_cost(a[0], b[0]), std::invalid_argument);
}

// ------------------------------------------------------------ MM iterations

TEST(Reduce, MatchesReferenceImplementation) {
  for (unsigned seed : kSeeds) {
    for (double trim : {0.0, 0.3}) {
      const std::vector<dfmr::Mixture> fs = local_estimates(seed, 8, trim > 0.0 ? 2 : 0);
      const dfmr::Mixture pooled = dfmr::pool(fs);
      const std::vector<dfmr::Mixture> starts = dfmr::default_starts(fs, 3);
      std::vector<double> objectives;
      for (const auto& start : starts) {
        const dfmr::ReduceResult r = dfmr::reduce(pooled, {start}, 3, with_trim(trim));
        const Reference ref = reference_reduce(pooled, start, trim);
        SCOPED_TRACE(::testing::Message() << "seed " << seed << ", trim " << trim);
        ASSERT_EQ(r.n_iter, ref.n_iter);
        EXPECT_EQ(r.converged, ref.converged);
        ASSERT_EQ(r.objective_trace.size(), ref.trace.size());
        for (std::size_t i = 0; i < ref.trace.size(); ++i)
          EXPECT_NEAR(r.objective_trace[i], ref.trace[i], 1e-9 * std::max(1.0, ref.trace[i]));
        EXPECT_NEAR(r.objective, ref.trace.back(), 1e-9 * std::max(1.0, ref.trace.back()));
        ASSERT_EQ(r.mixture.n_components(), ref.G.size());
        EXPECT_LE(rel_diff(r.assignment, ref.pi), 1e-12);
        EXPECT_LE(rel_diff(r.mixture.weights(), ref.w), 1e-12);
        for (std::size_t k = 0; k < ref.G.size(); ++k) {
          EXPECT_LE(rel_diff(r.mixture.means().row(static_cast<Eigen::Index>(k)).transpose(), ref.G[k].mu), 1e-9);
          EXPECT_LE(rel_diff(r.mixture.covariance(k), ref.G[k].S), 1e-9);
        }
        objectives.push_back(ref.trace.back());
      }
      // All starts together: the one with the smallest final objective wins.
      const dfmr::ReduceResult all = dfmr::reduce(pooled, starts, 3, with_trim(trim));
      ASSERT_EQ(all.start_objectives.size(), starts.size());
      const auto best = std::min_element(objectives.begin(), objectives.end());
      EXPECT_NEAR(all.objective, *best, 1e-9 * std::max(1.0, *best));
      EXPECT_EQ(all.objective, *std::min_element(all.start_objectives.begin(), all.start_objectives.end()));
      EXPECT_EQ(all.objective, all.start_objectives[static_cast<std::size_t>(all.start_index)]);
    }
  }
}

TEST(Reduce, ObjectiveTraceIsNonIncreasing) {
  for (unsigned seed : kSeeds) {
    for (double trim : {0.0, 0.3}) {
      const std::vector<dfmr::Mixture> fs = local_estimates(seed + 100, 10, 3, 4, 3);
      dfmr::ReduceOptions opt = with_trim(trim);
      opt.tol = 0.0;  // run every iteration
      opt.max_iter = 40;
      for (const auto& start : dfmr::default_starts(fs, 4)) {
        const dfmr::ReduceResult r = dfmr::reduce(dfmr::pool(fs), {start}, 4, opt);
        ASSERT_EQ(r.objective_trace.size(), static_cast<std::size_t>(r.n_iter) + 1);
        EXPECT_EQ(r.objective_trace.back(), r.objective);
        for (std::size_t i = 1; i < r.objective_trace.size(); ++i)
          EXPECT_LE(r.objective_trace[i], r.objective_trace[i - 1] + 1e-14 * std::max(1.0, r.objective_trace[i - 1]))
              << "seed " << seed << ", trim " << trim << ", step " << i;
      }
    }
  }
}

TEST(Reduce, WeightsSumToOne) {
  for (unsigned seed : kSeeds)
    for (double trim : {0.0, 0.3, 0.5}) {
      const dfmr::ReduceResult r = dfmr::reduce_mixtures(local_estimates(seed, 6, 2), 3, with_trim(trim));
      EXPECT_NEAR(r.mixture.weights().sum(), 1.0, 1e-12);
      EXPECT_TRUE((r.mixture.weights().array() >= 0.0).all());
    }
}

TEST(Reduce, ResultIsMomentMatchedFixedPoint) {
  for (unsigned seed : kSeeds) {
    for (double trim : {0.0, 0.3}) {
      const std::vector<dfmr::Mixture> fs = local_estimates(seed, 8, trim > 0.0 ? 2 : 0);
      const dfmr::Mixture pooled = dfmr::pool(fs);
      dfmr::ReduceOptions opt = with_trim(trim);
      opt.tol = 1e-10;
      const dfmr::ReduceResult r = dfmr::reduce_mixtures(fs, 3, opt);
      ASSERT_TRUE(r.converged);
      const MatrixXd& pi = r.assignment;
      ASSERT_EQ(pi.rows(), static_cast<Eigen::Index>(pooled.n_components()));
      ASSERT_EQ(pi.cols(), static_cast<Eigen::Index>(r.mixture.n_components()));
      EXPECT_NEAR(pi.sum(), 1.0 - trim, 1e-12);
      const std::vector<Gauss> G = moment_match(components(pooled), pi);
      ASSERT_EQ(G.size(), r.mixture.n_components());
      for (std::size_t k = 0; k < G.size(); ++k) {
        const auto K = static_cast<Eigen::Index>(k);
        EXPECT_LE(rel_diff(r.mixture.means().row(K).transpose(), G[k].mu), 1e-6);
        EXPECT_LE(rel_diff(r.mixture.covariance(k), G[k].S), 1e-6);
        EXPECT_NEAR(r.mixture.weights()(K), pi.col(K).sum() / (1.0 - trim), 1e-12);
      }
    }
  }
}

TEST(Reduce, ObjectiveIsTransportCostOfAssignment) {
  for (unsigned seed : kSeeds) {
    for (double trim : {0.0, 0.3}) {
      const std::vector<dfmr::Mixture> fs = local_estimates(seed, 8, trim > 0.0 ? 2 : 0);
      const dfmr::Mixture pooled = dfmr::pool(fs);
      const dfmr::ReduceResult r = dfmr::reduce_mixtures(fs, 3, with_trim(trim));
      const MatrixXd C = reference_cost(components(pooled), components(r.mixture));
      EXPECT_NEAR(r.objective, (r.assignment.array() * C.array()).sum(), 1e-9 * std::max(1.0, r.objective));
      // Mass sits only on the cheapest column, never above the pooled weight.
      double cheapest_dropped = std::numeric_limits<double>::infinity(), dearest_kept = 0.0;
      for (Eigen::Index n = 0; n < C.rows(); ++n) {
        Eigen::Index arg;
        const double best = C.row(n).minCoeff(&arg);
        const double mass = r.assignment.row(n).sum();
        EXPECT_EQ(mass, r.assignment(n, arg));
        EXPECT_LE(mass, pooled.weights()(n) * (1.0 + 1e-12));
        if (trim == 0.0) {
          EXPECT_NEAR(mass, pooled.weights()(n), 1e-15);
        }
        if (mass == 0.0) cheapest_dropped = std::min(cheapest_dropped, best);
        if (mass > 0.0) dearest_kept = std::max(dearest_kept, best);
      }
      EXPECT_LE(dearest_kept, cheapest_dropped);
    }
  }
}

TEST(Reduce, CopiesOfOneMixtureReduceToIt) {
  for (unsigned seed : kSeeds) {
    const dfmr::Mixture f = local_estimates(seed, 1, 0, 3, 3)[0];
    const dfmr::ReduceResult r = dfmr::reduce_mixtures(std::vector<dfmr::Mixture>(4, f), 3);
    EXPECT_NEAR(r.objective, 0.0, 1e-12);
    expect_same_mixture(r.mixture, f, 1e-12);
  }
}

TEST(Reduce, PermutedStartsGiveSameResult) {
  for (unsigned seed : kSeeds) {
    const std::vector<dfmr::Mixture> fs = local_estimates(seed, 6, 0);
    const dfmr::Mixture pooled = dfmr::pool(fs);
    const std::vector<dfmr::Mixture> starts = dfmr::default_starts(fs, 3);
    const dfmr::ReduceResult r = dfmr::reduce(pooled, starts, 3);
    std::vector<dfmr::Mixture> shuffled;
    for (auto it = starts.rbegin(); it != starts.rend(); ++it) shuffled.push_back(permuted(*it, {2, 0, 1}));
    const dfmr::ReduceResult rp = dfmr::reduce(pooled, shuffled, 3);
    EXPECT_NEAR(rp.objective, r.objective, 1e-12 * std::max(1.0, r.objective));
    expect_same_mixture(rp.mixture, r.mixture, 1e-12);
    for (std::size_t s = 0; s < starts.size(); ++s)
      EXPECT_NEAR(rp.start_objectives[starts.size() - 1 - s], r.start_objectives[s],
                  1e-12 * std::max(1.0, r.start_objectives[s]));
  }
}

TEST(Reduce, UnusedStartComponentIsDropped) {
  const std::vector<dfmr::Mixture> fs = local_estimates(7, 5, 0, 2, 3);
  const dfmr::Mixture pooled = dfmr::pool(fs);
  std::vector<Gauss> comps = components(fs[0]);
  comps.push_back({VectorXd::Constant(3, 1e3), MatrixXd::Identity(3, 3)});
  const dfmr::Mixture start = make_mixture(VectorXd::Constant(3, 1.0 / 3.0), comps);
  const dfmr::ReduceResult r = dfmr::reduce(pooled, {start}, 3);
  EXPECT_EQ(r.mixture.n_components(), 2u);
  EXPECT_EQ(r.assignment.cols(), 2);
  EXPECT_NEAR(r.mixture.weights().sum(), 1.0, 1e-12);
  EXPECT_TRUE((r.mixture.weights().array() > 0.0).all());
  // The first update drops the far component; from then on it is the two-component reduction.
  const dfmr::ReduceResult r2 = dfmr::reduce(pooled, {fs[0]}, 2);
  EXPECT_NEAR(r.objective, r2.objective, 1e-12 * std::max(1.0, r2.objective));
  expect_same_mixture(r.mixture, r2.mixture, 1e-12);
}

TEST(Reduce, ComponentEmptyInFinalAssignmentIsDropped) {
  // With max_iter = 0 the result is the start itself; its far component gets no mass.
  const std::vector<double> w1{0.3, 0.7}, m1{-1.0, 2.0}, v1{1.0, 0.5};
  const std::vector<double> w2{0.5, 0.5}, m2{0.0, 1e3}, v2{1.0, 1.0};
  const dfmr::Mixture pooled(2, 1, w1.data(), m1.data(), v1.data());
  const dfmr::Mixture start(2, 1, w2.data(), m2.data(), v2.data());
  dfmr::ReduceOptions opt;
  opt.max_iter = 0;
  const dfmr::ReduceResult r = dfmr::reduce(pooled, {start}, 2, opt);
  ASSERT_EQ(r.mixture.n_components(), 1u);
  EXPECT_EQ(r.assignment.cols(), 1);
  EXPECT_EQ(r.mixture.weights()(0), 1.0);
  EXPECT_EQ(r.mixture.means()(0, 0), 0.0);
  EXPECT_EQ(r.mixture.covariance(0)(0, 0), 1.0);
  // KL(N(m, v) || N(0, 1)) = 0.5 (v + m^2 - 1 - log v).
  const double expected = 0.3 * 0.5 * (1.0 + 1.0 - 1.0) + 0.7 * 0.5 * (0.5 + 4.0 - 1.0 - std::log(0.5));
  EXPECT_NEAR(r.objective, expected, 1e-14);
}

TEST(Reduce, TiesAreSplitEqually) {
  // The pooled N(0, 1) is equally far from N(-1, 1) and N(1, 1).
  const std::vector<double> w1{1.0}, m1{0.0}, v1{1.0}, w2{0.5, 0.5}, m2{-1.0, 1.0}, v2{1.0, 1.0};
  const dfmr::Mixture pooled(1, 1, w1.data(), m1.data(), v1.data());
  const dfmr::Mixture start(2, 1, w2.data(), m2.data(), v2.data());
  dfmr::ReduceOptions opt;
  opt.max_iter = 0;
  const dfmr::ReduceResult r0 = dfmr::reduce(pooled, {start}, 2, opt);
  EXPECT_EQ(r0.n_iter, 0);
  EXPECT_FALSE(r0.converged);
  ASSERT_EQ(r0.assignment.cols(), 2);
  EXPECT_EQ(r0.assignment(0, 0), 0.5);
  EXPECT_EQ(r0.assignment(0, 1), 0.5);
  EXPECT_NEAR(r0.objective, 0.5, 1e-15);  // KL(N(0,1) || N(+-1,1)) = 1/2
  const dfmr::ReduceResult r = dfmr::reduce(pooled, {start}, 2);
  ASSERT_EQ(r.mixture.n_components(), 2u);
  for (std::size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(r.mixture.weights()(static_cast<Eigen::Index>(k)), 0.5);
    EXPECT_NEAR(r.mixture.means()(static_cast<Eigen::Index>(k), 0), 0.0, 1e-15);
    EXPECT_NEAR(r.mixture.covariance(k)(0, 0), 1.0, 1e-15);
  }
  EXPECT_NEAR(r.objective, 0.0, 1e-15);
}

TEST(Reduce, ExtremeScalesAreMomentMatched) {
  // Reduce 0.5 N(0, 1e-8 I) + 0.5 N(1e6 1, 1e8 I) to one Gaussian: mean 5e5 1,
  // covariance 0.5 (1e-8 + 1e8) I + 0.25e12 1 1^T.
  const int d = 2;
  const std::vector<Gauss> comps{{VectorXd::Zero(d), 1e-8 * MatrixXd::Identity(d, d)},
                                 {VectorXd::Constant(d, 1e6), 1e8 * MatrixXd::Identity(d, d)}};
  const dfmr::Mixture pooled = make_mixture(VectorXd::Constant(2, 0.5), comps);
  const dfmr::ReduceResult r = dfmr::reduce_mixtures({pooled}, 1);
  ASSERT_EQ(r.mixture.n_components(), 1u);
  const MatrixXd S = 0.5 * (1e-8 + 1e8) * MatrixXd::Identity(d, d) + 0.25e12 * MatrixXd::Ones(d, d);
  EXPECT_LE(rel_diff(r.mixture.means().row(0).transpose(), VectorXd::Constant(d, 5e5)), 1e-14);
  EXPECT_LE(rel_diff(r.mixture.covariance(0), S), 1e-12);
  const Gauss G{VectorXd::Constant(d, 5e5), S};
  const double expected = 0.5 * kl(comps[0], G) + 0.5 * kl(comps[1], G);
  EXPECT_TRUE(std::isfinite(r.objective));
  EXPECT_NEAR(r.objective, expected, 1e-8 * expected);
}

TEST(Reduce, ThreadCountDoesNotChangeResult) {
  const std::vector<dfmr::Mixture> fs = local_estimates(9, 10, 2);
  dfmr::ReduceOptions opt;
  opt.n_threads = 1;
  const dfmr::ReduceResult r1 = dfmr::reduce_mixtures(fs, 3, opt);
  for (int n_threads : {2, 0}) {
    opt.n_threads = n_threads;
    const dfmr::ReduceResult rn = dfmr::reduce_mixtures(fs, 3, opt);
    EXPECT_EQ(rn.objective, r1.objective);
    EXPECT_EQ(rn.start_index, r1.start_index);
    EXPECT_EQ(rn.start_objectives, r1.start_objectives);
    EXPECT_EQ(rn.assignment, r1.assignment);
    EXPECT_EQ(rn.mixture.means(), r1.mixture.means());
  }
}

TEST(Reduce, TiesBetweenStartsGoToLowestIndex) {
  const std::vector<dfmr::Mixture> fs = local_estimates(10, 4, 0);
  const dfmr::ReduceResult r = dfmr::reduce(dfmr::pool(fs), {fs[2], fs[2], fs[2]}, 3);
  EXPECT_EQ(r.start_index, 0);
  EXPECT_EQ(r.start_objectives.size(), 3u);
}

TEST(Reduce, InvalidInputThrows) {
  const std::vector<dfmr::Mixture> fs = local_estimates(11, 3, 0);
  const dfmr::Mixture pooled = dfmr::pool(fs);
  auto run = [&](const dfmr::ReduceOptions& opt) { return dfmr::reduce(pooled, fs, 3, opt); };
  dfmr::ReduceOptions opt;
  opt.max_iter = -1;
  EXPECT_THROW(run(opt), std::invalid_argument);
  for (double tol : {-1e-3, kNaN}) {
    opt = {};
    opt.tol = tol;
    EXPECT_THROW(run(opt), std::invalid_argument) << "tol " << tol;
  }
  for (double trim : {-0.1, 1.0, 1.5, kNaN}) {
    opt = {};
    opt.trim = trim;
    EXPECT_THROW(run(opt), std::invalid_argument) << "trim " << trim;
    EXPECT_THROW(dfmr::reduce_mixtures(fs, 3, opt), std::invalid_argument) << "trim " << trim;
  }
  EXPECT_THROW(dfmr::reduce(pooled, fs, 0), std::invalid_argument);
  EXPECT_THROW(dfmr::reduce(pooled, {}, 3), std::invalid_argument);
  EXPECT_THROW(dfmr::reduce(pooled, fs, 2), std::invalid_argument);  // starts have 3 > 2 components
  const std::vector<dfmr::Mixture> other_dim = local_estimates(11, 1, 0, 3, 2);
  EXPECT_THROW(dfmr::reduce(pooled, other_dim, 3), std::invalid_argument);
  EXPECT_THROW(dfmr::reduce_mixtures({}, 3), std::invalid_argument);
  EXPECT_THROW(dfmr::default_starts(fs, 0), std::invalid_argument);
}

// ---------------------------------------------------------------- trimming

TEST(Trimmed, ZeroTrimIsPlainReduction) {
  for (unsigned seed : kSeeds) {
    const std::vector<dfmr::Mixture> fs = local_estimates(seed, 6, 1);
    const dfmr::ReduceResult plain = dfmr::reduce_mixtures(fs, 3);
    const dfmr::ReduceResult zero = dfmr::reduce_mixtures(fs, 3, with_trim(0.0));
    EXPECT_EQ(zero.objective, plain.objective);
    EXPECT_EQ(zero.assignment, plain.assignment);
    EXPECT_EQ(zero.mixture.weights(), plain.mixture.weights());
    EXPECT_EQ(zero.mixture.means(), plain.mixture.means());
    const dfmr::Mixture winner = dfmr::default_starts(fs, 3)[static_cast<std::size_t>(plain.start_index)];
    const Reference ref = reference_reduce(dfmr::pool(fs), winner, 0.0);
    EXPECT_NEAR(plain.objective, ref.trace.back(), 1e-9 * std::max(1.0, ref.trace.back()));
    EXPECT_LE(rel_diff(plain.mixture.weights(), ref.w), 1e-12);
  }
}

TEST(Trimmed, WeightsSumToOneAndOutliersAreTrimmed) {
  for (unsigned seed : kSeeds) {
    // 2 of 10 machines are Byzantine: their components carry 0.2 of the pooled mass.
    const std::vector<dfmr::Mixture> fs = local_estimates(seed, 10, 2);
    const dfmr::Mixture pooled = dfmr::pool(fs);
    for (double trim : {0.25, 0.3, 0.5}) {
      const dfmr::ReduceResult r = dfmr::reduce(pooled, dfmr::default_starts(fs, 3), 3, with_trim(trim));
      EXPECT_NEAR(r.mixture.weights().sum(), 1.0, 1e-12);
      EXPECT_NEAR(r.assignment.sum(), 1.0 - trim, 1e-12);
      // The rows of the two Byzantine machines (the first 6 pooled components) are not transported.
      EXPECT_EQ(r.assignment.topRows(6).sum(), 0.0) << "seed " << seed << ", trim " << trim;
      EXPECT_LT(r.mixture.means().maxCoeff(), 40.0);
    }
  }
}

// ------------------------------------------------------------------ starts

TEST(DefaultStarts, ReturnsExactlyTheKComponentMixtures) {
  std::vector<dfmr::Mixture> fs;
  const std::vector<int> sizes{3, 2, 3, 1, 3};
  for (std::size_t i = 0; i < sizes.size(); ++i)
    fs.push_back(local_estimates(20 + static_cast<unsigned>(i), 1, 0, sizes[i], 2)[0]);
  const std::vector<dfmr::Mixture> starts = dfmr::default_starts(fs, 3);
  const std::vector<std::size_t> expected{0, 2, 4};
  ASSERT_EQ(starts.size(), expected.size());
  for (std::size_t s = 0; s < starts.size(); ++s) {
    const dfmr::Mixture& f = fs[expected[s]];
    EXPECT_EQ(starts[s].weights(), f.weights());
    EXPECT_EQ(starts[s].means(), f.means());
    for (std::size_t k = 0; k < 3; ++k) EXPECT_EQ(MatrixXd(starts[s].covariance(k)), MatrixXd(f.covariance(k)));
  }
  const std::vector<dfmr::Mixture> twos = dfmr::default_starts(fs, 2);
  ASSERT_EQ(twos.size(), 1u);
  EXPECT_EQ(twos[0].means(), fs[1].means());
}

TEST(DefaultStarts, SeedsOneStartWhenNoMixtureHasK) {
  for (unsigned seed : kSeeds) {
    const std::vector<dfmr::Mixture> fs{local_estimates(seed, 1, 0, 2, 3)[0], local_estimates(seed + 50, 1, 0, 2, 3)[0],
                                        local_estimates(seed + 90, 1, 0, 1, 3)[0]};
    const dfmr::Mixture pooled = dfmr::pool(fs);
    const std::vector<Gauss> pc = components(pooled);
    const std::vector<dfmr::Mixture> starts = dfmr::default_starts(fs, 4);
    ASSERT_EQ(starts.size(), 1u);
    const dfmr::Mixture& s = starts[0];
    ASSERT_EQ(s.n_components(), 4u);
    EXPECT_NEAR(s.weights().sum(), 1.0, 1e-12);
    // Greedy farthest-point seeding from the heaviest pooled component, recomputed here.
    std::vector<std::size_t> chosen;
    Eigen::Index heaviest;
    pooled.weights().maxCoeff(&heaviest);
    chosen.push_back(static_cast<std::size_t>(heaviest));
    while (chosen.size() < 4) {
      std::size_t far = 0;
      double far_score = -1.0;
      for (std::size_t n = 0; n < pc.size(); ++n) {
        double nearest = std::numeric_limits<double>::infinity();
        for (std::size_t c : chosen) nearest = std::min(nearest, kl(pc[n], pc[c]));
        const double score = pooled.weights()(static_cast<Eigen::Index>(n)) * nearest;
        if (score > far_score) far_score = score, far = n;
      }
      chosen.push_back(far);
    }
    for (std::size_t k = 0; k < 4; ++k) {
      EXPECT_EQ(VectorXd(s.means().row(static_cast<Eigen::Index>(k)).transpose()), pc[chosen[k]].mu) << "k = " << k;
      EXPECT_EQ(MatrixXd(s.covariance(k)), pc[chosen[k]].S) << "k = " << k;
    }
    // And reduce_mixtures runs from exactly these starts.
    const dfmr::ReduceResult a = dfmr::reduce_mixtures(fs, 4);
    const dfmr::ReduceResult b = dfmr::reduce(pooled, starts, 4);
    EXPECT_EQ(a.objective, b.objective);
    EXPECT_EQ(a.mixture.means(), b.mixture.means());
  }
}

}  // namespace

TEST(DefaultStarts, SeedingStopsWhenOnlyDuplicatesRemain) {
  // Three copies of a two-component mixture hold two distinct components: a third seed
  // would duplicate one of them, so the seeded start has two components.
  const std::vector<double> w{0.5, 0.5}, m{-3.0, 3.0}, v{1.0, 1.0};
  const dfmr::Mixture f(2, 1, w.data(), m.data(), v.data());
  const std::vector<dfmr::Mixture> starts = dfmr::default_starts({f, f, f}, 3);
  ASSERT_EQ(starts.size(), 1u);
  ASSERT_EQ(starts[0].n_components(), 2u);
  EXPECT_NE(starts[0].means()(0, 0), starts[0].means()(1, 0));
  const dfmr::ReduceResult r = dfmr::reduce_mixtures({f, f, f}, 3);
  ASSERT_EQ(r.mixture.n_components(), 2u);
  EXPECT_DOUBLE_EQ(r.mixture.weights()[0], 0.5);
}

TEST(Reduce, NegativeThreadCountIsRejected) {
  const std::vector<double> w{1.0}, m{0.0}, v{1.0};
  const dfmr::Mixture f(1, 1, w.data(), m.data(), v.data());
  dfmr::ReduceOptions opt;
  opt.n_threads = -1;
  EXPECT_THROW(dfmr::reduce(f, {f}, 1, opt), std::invalid_argument);
}

// ------------------------------------------------------------ shared trajectories

// Every field the caller sees, compared with == (not within a tolerance).
void expect_bit_identical(const dfmr::ReduceResult& a, const dfmr::ReduceResult& b) {
  EXPECT_EQ(a.objective, b.objective);
  EXPECT_EQ(a.n_iter, b.n_iter);
  EXPECT_EQ(a.converged, b.converged);
  EXPECT_EQ(a.objective_trace, b.objective_trace);
  EXPECT_EQ(a.start_index, b.start_index);
  EXPECT_EQ(a.start_objectives, b.start_objectives);
  EXPECT_EQ(a.start_n_iter, b.start_n_iter);
  EXPECT_EQ(a.assignment, b.assignment);
  EXPECT_EQ(a.mixture.weights(), b.mixture.weights());
  EXPECT_EQ(a.mixture.means(), b.mixture.means());
  const std::size_t n = a.mixture.n_components() * a.mixture.dim() * a.mixture.dim();
  ASSERT_EQ(a.mixture.n_components(), b.mixture.n_components());
  EXPECT_TRUE(std::equal(a.mixture.covariance_data(), a.mixture.covariance_data() + n, b.mixture.covariance_data()));
}

// Overlapping random components: many local optima, starts rarely share a plan.
std::vector<dfmr::Mixture> overlapping_estimates(unsigned seed, int m, int K, int d) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<dfmr::Mixture> out;
  for (int i = 0; i < m; ++i) {
    std::vector<Gauss> comps;
    for (int k = 0; k < K; ++k) {
      VectorXd mu(d);
      for (int j = 0; j < d; ++j) mu(j) = 2.0 * z(rng);
      comps.push_back({mu, random_spd(rng, d, 0.3)});
    }
    out.push_back(make_mixture(VectorXd::Constant(K, 1.0 / K), comps));
  }
  return out;
}

// The iterative covariance models share trajectories too: their update is the M-step solved afresh
// from the plan (VEI, VEE, VEV: the global minimum; EVE, VVE: kept only when it does not raise the
// transport cost, else the M-step from the covariances before, and then that step is not shared).
// Sharing changes nothing bit for bit, and every start's objective never rises. (On these pools
// the fresh M-step happens never to raise the cost; the next test is a case where it does.)
TEST(SharedTrajectories, IterativeCovarianceModelsBitIdenticalAndMonotone) {
  int cut = 0;
  for (const char* name : {"VEI", "VEE", "EVE", "VVE", "VEV"}) {
    for (unsigned seed : {1u, 2u}) {
      const std::vector<std::vector<dfmr::Mixture>> pools{local_estimates(seed + 400, 12, 3, 3, 4),
                                                          overlapping_estimates(seed + 420, 12, 3, 3)};
      for (std::size_t p = 0; p < pools.size(); ++p)
        for (double trim : {0.0, 0.3})
          for (int n_threads : {1, 2}) {
            SCOPED_TRACE(::testing::Message() << name << ", seed " << seed << ", pool " << p << ", trim " << trim
                                              << ", threads " << n_threads);
            dfmr::ReduceOptions opt = with_trim(trim);
            opt.model = dfmr::parse_covariance_model(name, pools[p][0].dim());
            opt.n_threads = n_threads;
            opt.share_trajectories = false;
            const dfmr::ReduceResult full = dfmr::reduce_mixtures(pools[p], 3, opt);
            opt.share_trajectories = true;
            const dfmr::ReduceResult shared = dfmr::reduce_mixtures(pools[p], 3, opt);
            expect_bit_identical(shared, full);
            cut += shared.n_starts_cut;
            // Every start, not only the winner: run each alone and read its trace. MR's never rises
            // at all; the trimmed assignment's kept masses carry rounding (a few ulps).
            const double slack = trim > 0.0 ? 1e-12 : 0.0;
            for (const dfmr::Mixture& start : pools[p]) {
              // From the first update on: the start, taken as given, is no member of the model.
              const dfmr::ReduceResult one = dfmr::reduce(dfmr::pool(pools[p]), {start}, 3, opt);
              for (std::size_t t = 2; t < one.objective_trace.size(); ++t)
                EXPECT_LE(one.objective_trace[t], one.objective_trace[t - 1] * (1.0 + slack)) << "step " << t;
            }
          }
    }
  }
  EXPECT_GT(cut, 0);
}

// VVE's M-step objective can have several minima in the common orientation, and the fresh M-step
// (from the eigenvectors of sum_k W_k / n_k) can land in a worse one than the M-step from the
// covariances before. A start's first update is the fresh M-step of its first plan unconditionally
// (the start, taken as given, is no member of the model to keep; see run_start); from the second
// update on the guard keeps the better one. Here (four pooled components in d = 2, three reduced,
// found by a search over random pools) the second update's fresh M-step costs 0.73 under its plan
// against 0.51 before: without the guard the objective rises at step 2.
TEST(SharedTrajectories, IterativeModelKeepsTheBetterOrientationWhenTheFreshMStepIsWorse) {
  const auto model = dfmr::CovarianceModel::VVE;
  auto rotated = [](double angle, double a, double b) {
    MatrixXd R(2, 2);
    R << std::cos(angle), -std::sin(angle), std::sin(angle), std::cos(angle);
    return MatrixXd(R * Eigen::Vector2d(a, b).asDiagonal() * R.transpose());
  };
  const std::vector<MatrixXd> S{rotated(1.31, 3.41, 1.22), rotated(2.58, 8.07, 0.92), rotated(0.66, 7.64, 0.05),
                                rotated(1.41, 186.96, 0.41)};
  VectorXd w(4);
  w << 0.09, 0.49, 0.29, 0.13;
  MatrixXd mu(4, 2);
  mu << 3.0, -3.7, 2.7, -3.1, 3.5, 0.7, -8.1, -2.2;
  const dfmr::Mixture pooled(w, mu, S);
  MatrixXd start_mu(3, 2);
  start_mu << 3.3, 0.4, 2.3, -4.3, 3.1, -4.1;
  const dfmr::Mixture start(VectorXd::Constant(3, 1.0 / 3.0), start_mu, {S[2], S[1], S[0]});
  dfmr::ReduceOptions opt;
  opt.model = model;
  opt.n_threads = 1;
  // The case: the fresh M-step of the plan after the first update, and its transport cost under
  // that plan (the scatters about the plan's means; the means are the plan's, whatever V_k).
  opt.max_iter = 1;
  const dfmr::ReduceResult one = dfmr::reduce(pooled, {start}, 3, opt);
  const MatrixXd& plan = one.assignment;
  const auto K = plan.cols();
  ASSERT_EQ(K, 3);
  const VectorXd n = plan.colwise().sum().transpose();
  const MatrixXd m = (plan.transpose() * mu).array().colwise() / n.array();
  std::vector<MatrixXd> W(static_cast<std::size_t>(K), MatrixXd::Zero(2, 2));
  for (Eigen::Index k = 0; k < K; ++k)
    for (Eigen::Index i = 0; i < 4; ++i) {
      const VectorXd r = mu.row(i) - m.row(k);
      W[static_cast<std::size_t>(k)] += plan(i, k) * (S[static_cast<std::size_t>(i)] + r * r.transpose());
    }
  const std::vector<MatrixXd> fresh = dfmr::constrained_m_step(model, W, n);
  const MatrixXd C = dfmr::kl_cost(pooled, dfmr::Mixture(n / n.sum(), m, fresh));
  const double fresh_cost = plan.cwiseProduct(C).sum();
  ASSERT_GT(fresh_cost, one.objective + 0.1);  // the case the guard exists for
  opt.max_iter = 100;
  const dfmr::ReduceResult out = dfmr::reduce(pooled, {start}, 3, opt);
  ASSERT_GE(out.objective_trace.size(), 3u);
  EXPECT_EQ(out.objective_trace[1], one.objective);
  // From the first update on (the start is no member: its own objective is not compared).
  for (std::size_t t = 2; t < out.objective_trace.size(); ++t)
    EXPECT_LE(out.objective_trace[t], out.objective_trace[t - 1]) << "step " << t;
  EXPECT_LT(out.objective, one.objective);
}

TEST(SharedTrajectories, BitIdenticalToRunningEveryStartInFull) {
  int cut_one_thread = 0, cut_small_budget = 0;
  for (unsigned seed : {1u, 2u, 3u}) {  // kept small: the grid below is large, and sanitizer builds are slow
    const std::vector<std::vector<dfmr::Mixture>> pools{
        local_estimates(seed + 300, 16, 0),      // well separated: starts reach the same plans
        local_estimates(seed + 310, 16, 4),      // a quarter of the machines attacked
        overlapping_estimates(seed + 320, 16, 3, 3)};
    for (std::size_t p = 0; p < pools.size(); ++p) {
      for (double trim : {0.0, 0.3}) {
        for (int max_iter : {0, 1, 2, 3, 5, 30}) {
          // A loose tol makes a joining start stop one step after the shared plan by itself; with
          // tol = 0 a repeated plan does not stop a start.
          for (double tol : {0.0, 1e-5, 0.05}) {
          for (int n_threads : {1, 2}) {
            SCOPED_TRACE(::testing::Message() << "seed " << seed << ", pool " << p << ", trim " << trim << ", max_iter "
                                              << max_iter << ", tol " << tol << ", threads " << n_threads);
            dfmr::ReduceOptions opt = with_trim(trim);
            opt.max_iter = max_iter;
            opt.tol = tol;
            opt.n_threads = n_threads;
            opt.share_trajectories = false;
            const dfmr::ReduceResult full = dfmr::reduce_mixtures(pools[p], 3, opt);
            opt.share_trajectories = true;
            const dfmr::ReduceResult shared = dfmr::reduce_mixtures(pools[p], 3, opt);
            expect_bit_identical(shared, full);
            EXPECT_EQ(full.n_starts_cut, 0);
            EXPECT_LT(shared.n_starts_cut, static_cast<int>(full.start_objectives.size()));
            // A cut needs the earlier start to go on past the shared plan: two steps at least.
            if (max_iter < 2) EXPECT_EQ(shared.n_starts_cut, 0);
            if (n_threads == 1) cut_one_thread += shared.n_starts_cut;
            if (max_iter <= 3) cut_small_budget += shared.n_starts_cut;
          }
          }
        }
      }
    }
  }
  // The comparison above is only meaningful if starts were actually cut, also under tight budgets.
  EXPECT_GT(cut_one_thread, 0);
  EXPECT_GT(cut_small_budget, 0);
}

TEST(SharedTrajectories, StartsJoiningTheFirstTrajectoryAreCut) {
  // Well-separated clusters: every start assigns the pool to the true clusters at once, so the
  // first start's plan at step 0 is every later start's plan at step 0.
  const std::vector<dfmr::Mixture> fs = local_estimates(42, 12, 0);
  dfmr::ReduceOptions opt;
  opt.n_threads = 1;
  const dfmr::ReduceResult r = dfmr::reduce_mixtures(fs, 3, opt);
  EXPECT_EQ(r.n_starts_cut, 11);
  EXPECT_EQ(r.start_index, 0);
  opt.share_trajectories = false;
  expect_bit_identical(r, dfmr::reduce_mixtures(fs, 3, opt));
}
