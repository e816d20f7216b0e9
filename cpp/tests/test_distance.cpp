// Tests of dfmr::l2_distance and dfmr::pairwise_l2 against closed forms evaluated with Eigen,
// numerical integration in one dimension, and log-space closed forms for extreme scales.
#include <dfmr/distance.hpp>
#include <dfmr/mixture.hpp>

#include <gtest/gtest.h>

#include "overlap_kernels.hpp"
#include "test_support.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using dfmr_test::gauss_pdf;
using dfmr_test::kPi;
using dfmr_test::random_spd;

dfmr::Mixture random_mixture(std::mt19937& rng, int K, int d, double spread = 2.0) {
  std::uniform_real_distribution<double> u(0.5, 1.5);
  std::normal_distribution<double> z(0.0, spread);
  VectorXd w(K);
  MatrixXd mu(K, d);
  std::vector<MatrixXd> cov;
  for (int k = 0; k < K; ++k) {
    w(k) = u(rng);
    for (int i = 0; i < d; ++i) mu(k, i) = z(rng);
    cov.push_back(random_spd(rng, d));
  }
  return dfmr::Mixture(w / w.sum(), mu, cov);
}

VectorXd mean(const dfmr::Mixture& f, std::size_t k) {
  return f.means().row(static_cast<Eigen::Index>(k)).transpose();
}

double weight(const dfmr::Mixture& f, std::size_t k) { return f.weights()(static_cast<Eigen::Index>(k)); }

// sum_ab w_a v_b N(mu_a; nu_b, S_a + P_b), in linear space.
double cross_term(const dfmr::Mixture& f, const dfmr::Mixture& g) {
  double s = 0.0;
  for (std::size_t a = 0; a < f.n_components(); ++a)
    for (std::size_t b = 0; b < g.n_components(); ++b)
      s += weight(f, a) * weight(g, b) *
           gauss_pdf(mean(f, a), mean(g, b), MatrixXd(f.covariance(a)) + MatrixXd(g.covariance(b)));
  return s;
}

double direct_l2_squared(const dfmr::Mixture& f, const dfmr::Mixture& g) {
  return cross_term(f, f) + cross_term(g, g) - 2.0 * cross_term(f, g);
}

// A mixture with its components in the order given by perm.
dfmr::Mixture permuted(const dfmr::Mixture& f, const std::vector<std::size_t>& perm) {
  const auto K = static_cast<Eigen::Index>(f.n_components());
  VectorXd w(K);
  MatrixXd mu(K, static_cast<Eigen::Index>(f.dim()));
  std::vector<MatrixXd> cov;
  for (Eigen::Index k = 0; k < K; ++k) {
    const std::size_t src = perm[static_cast<std::size_t>(k)];
    w(k) = weight(f, src);
    mu.row(k) = f.means().row(static_cast<Eigen::Index>(src));
    cov.emplace_back(f.covariance(src));
  }
  return dfmr::Mixture(w, mu, cov);
}

dfmr::Mixture one_dimensional(const std::vector<double>& w, const std::vector<double>& m,
                              const std::vector<double>& v) {
  return dfmr::Mixture(w.size(), 1, w.data(), m.data(), v.data());
}

// Isotropic component w N(mu, s I): the log of every Gaussian overlap has a closed form,
//   log N(mu_a; mu_b, (s_a + s_b) I) = -0.5 [ d log(2 pi (s_a + s_b)) + |mu_a - mu_b|^2 / (s_a + s_b) ].
struct Iso {
  double w;
  VectorXd mu;
  double s;
};

dfmr::Mixture iso_mixture(const std::vector<Iso>& comps) {
  const auto K = static_cast<Eigen::Index>(comps.size());
  const Eigen::Index d = comps.front().mu.size();
  VectorXd w(K);
  MatrixXd mu(K, d);
  std::vector<MatrixXd> cov;
  for (Eigen::Index k = 0; k < K; ++k) {
    const Iso& c = comps[static_cast<std::size_t>(k)];
    w(k) = c.w;
    mu.row(k) = c.mu.transpose();
    cov.push_back(c.s * MatrixXd::Identity(d, d));
  }
  return dfmr::Mixture(w, mu, cov);
}

double log_sum_exp(const std::vector<double>& x) {
  const double top = *std::max_element(x.begin(), x.end());
  double s = 0.0;
  for (double v : x) s += std::exp(v - top);
  return top + std::log(s);
}

std::vector<double> iso_log_terms(const std::vector<Iso>& f, const std::vector<Iso>& g) {
  std::vector<double> t;
  for (const Iso& a : f)
    for (const Iso& b : g) {
      const double s = a.s + b.s;
      const auto d = static_cast<double>(a.mu.size());
      t.push_back(std::log(a.w * b.w) - 0.5 * (d * std::log(2.0 * kPi * s) + (a.mu - b.mu).squaredNorm() / s));
    }
  return t;
}

// log ||f - g|| for isotropic mixtures, every sum formed in log space.
double iso_log_distance(const std::vector<Iso>& f, const std::vector<Iso>& g) {
  std::vector<double> self = iso_log_terms(f, f);
  const std::vector<double> gg = iso_log_terms(g, g);
  self.insert(self.end(), gg.begin(), gg.end());
  const double positive = log_sum_exp(self);
  const double negative = std::log(2.0) + log_sum_exp(iso_log_terms(f, g));
  return 0.5 * (positive + std::log1p(-std::exp(negative - positive)));
}

void expect_rel(double actual, double expected, double rel) {
  EXPECT_NEAR(actual, expected, rel * std::abs(expected)) << "expected " << expected;
}

// --------------------------------------------------------------- closed forms

TEST(L2Distance, TwoGaussiansMatchClosedForm) {
  std::mt19937 rng(21);
  std::normal_distribution<double> z(0.0, 1.0);
  for (int d : {1, 2, 3, 5}) {
    for (int rep = 0; rep < 3; ++rep) {
      const MatrixXd S1 = random_spd(rng, d), S2 = random_spd(rng, d);
      VectorXd mu1(d), mu2(d);
      for (int i = 0; i < d; ++i) mu1(i) = z(rng), mu2(i) = z(rng) + 1.0;
      const dfmr::Mixture f(VectorXd::Ones(1), mu1.transpose(), {S1});
      const dfmr::Mixture g(VectorXd::Ones(1), mu2.transpose(), {S2});
      const VectorXd o = VectorXd::Zero(d);
      const double expected =
          gauss_pdf(o, o, 2.0 * S1) + gauss_pdf(o, o, 2.0 * S2) - 2.0 * gauss_pdf(mu1, mu2, S1 + S2);
      const double dist = dfmr::l2_distance(f, g);
      expect_rel(dist * dist, expected, 1e-12);
    }
  }
}

TEST(L2Distance, MixturesMatchDirectDoubleSum) {
  std::mt19937 rng(22);
  const std::vector<std::pair<int, int>> sizes{{3, 2}, {1, 4}, {4, 4}, {2, 1}};
  for (int d : {1, 2, 4, 10}) {
    for (const auto& [kf, kg] : sizes) {
      const dfmr::Mixture f = random_mixture(rng, kf, d), g = random_mixture(rng, kg, d);
      const double dist = dfmr::l2_distance(f, g);
      expect_rel(dist * dist, direct_l2_squared(f, g), 1e-11);
    }
  }
}

TEST(L2Distance, TermsAcrossTheExponentialWindow) {
  // The log-sum-exp over a pair's K x K overlaps leaves out terms below e^-64 times the largest and
  // evaluates the others with its own exp and log: component pairs whose overlaps sit e^-2 to
  // e^-900 below the largest, against the direct sum in linear space.
  for (double gap : {2.0, 8.0, 11.3, 15.9, 16.1, 20.0, 60.0}) {
    MatrixXd mu_f(2, 1), mu_g(2, 1);
    mu_f << 0.0, gap;
    mu_g << 0.3, -gap;
    const std::vector<MatrixXd> cov_f{MatrixXd::Constant(1, 1, 1.0), MatrixXd::Constant(1, 1, 0.5)};
    const std::vector<MatrixXd> cov_g{MatrixXd::Constant(1, 1, 1.5), MatrixXd::Constant(1, 1, 1.0)};
    const dfmr::Mixture f(VectorXd::Constant(2, 0.5), mu_f, cov_f), g((VectorXd(2) << 0.3, 0.7).finished(), mu_g, cov_g);
    const double dist = dfmr::l2_distance(f, g);
    expect_rel(dist * dist, direct_l2_squared(f, g), 1e-13);
  }
}

TEST(L2Distance, OneDimensionalMatchesNumericalIntegration) {
  // Composite Simpson on [-60, 60] with h = 1e-3; the densities below live well inside.
  const std::vector<std::pair<dfmr::Mixture, dfmr::Mixture>> cases{
      {one_dimensional({0.2, 0.5, 0.3}, {-2.0, 0.5, 3.0}, {0.5, 1.5, 0.3}),
       one_dimensional({0.6, 0.4}, {-1.0, 2.5}, {1.0, 0.8})},
      {one_dimensional({1.0}, {0.0}, {1.0}), one_dimensional({0.5, 0.5}, {-0.3, 0.4}, {0.9, 1.2})},
      {one_dimensional({0.1, 0.9}, {-5.0, 4.0}, {4.0, 0.25}),
       one_dimensional({0.3, 0.3, 0.4}, {-5.0, 0.0, 4.0}, {3.0, 2.0, 0.3})},
  };
  auto density = [](const dfmr::Mixture& f, double x) {
    double s = 0.0;
    for (std::size_t k = 0; k < f.n_components(); ++k) {
      const double v = f.covariance(k)(0, 0), r = x - f.means()(static_cast<Eigen::Index>(k), 0);
      s += weight(f, k) * std::exp(-r * r / (2.0 * v)) / std::sqrt(2.0 * kPi * v);
    }
    return s;
  };
  for (const auto& [f, g] : cases) {
    const double a = -60.0, b = 60.0;
    const int n = 120000;
    const double h = (b - a) / n;
    double sum = 0.0;
    for (int i = 0; i <= n; ++i) {
      const double x = a + h * i;
      const double diff = density(f, x) - density(g, x);
      const double c = (i == 0 || i == n) ? 1.0 : (i % 2 == 1 ? 4.0 : 2.0);
      sum += c * diff * diff;
    }
    const double integral = sum * h / 3.0;
    const double dist = dfmr::l2_distance(f, g);
    expect_rel(dist * dist, integral, 1e-10);
  }
}

// ------------------------------------------------------------------ structure

TEST(PairwiseL2, SymmetricWithExactZeroDiagonal) {
  std::mt19937 rng(23);
  std::vector<dfmr::Mixture> fs;
  for (int i = 0; i < 7; ++i) fs.push_back(random_mixture(rng, 1 + i % 4, 3));
  fs.push_back(fs[2]);  // an exact copy
  const MatrixXd D = dfmr::pairwise_l2(fs);
  ASSERT_EQ(D.rows(), 8);
  ASSERT_EQ(D.cols(), 8);
  for (Eigen::Index i = 0; i < 8; ++i) {
    EXPECT_EQ(D(i, i), 0.0);
    for (Eigen::Index j = 0; j < 8; ++j) {
      EXPECT_EQ(D(i, j), D(j, i));
      EXPECT_TRUE(std::isfinite(D(i, j)));
      EXPECT_GE(D(i, j), 0.0);
    }
  }
  // An exact copy is at distance 0 up to the cancellation of the sum of squares.
  const double norm = std::sqrt(cross_term(fs[2], fs[2]));
  EXPECT_LE(D(2, 7), 1e-7 * norm);
  for (std::size_t i = 0; i < 7; ++i)
    for (std::size_t j = 0; j < 7; ++j)
      if (i != j) {
        EXPECT_GT(D(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)), 1e-3);
      }
}

TEST(L2Distance, SymmetricInItsArguments) {
  std::mt19937 rng(24);
  for (int rep = 0; rep < 5; ++rep) {
    const dfmr::Mixture f = random_mixture(rng, 3, 2), g = random_mixture(rng, 2, 2);
    expect_rel(dfmr::l2_distance(f, g), dfmr::l2_distance(g, f), 1e-13);
  }
}

TEST(L2Distance, InvariantToComponentOrder) {
  std::mt19937 rng(25);
  for (int rep = 0; rep < 3; ++rep) {
    const dfmr::Mixture f = random_mixture(rng, 4, 3), g = random_mixture(rng, 3, 3);
    const dfmr::Mixture fp = permuted(f, {2, 0, 3, 1}), gp = permuted(g, {1, 2, 0});
    const double ref = dfmr::l2_distance(f, g);
    expect_rel(dfmr::l2_distance(fp, g), ref, 1e-12);
    expect_rel(dfmr::l2_distance(f, gp), ref, 1e-12);
    expect_rel(dfmr::l2_distance(fp, gp), ref, 1e-12);
    EXPECT_LE(dfmr::l2_distance(f, fp), 1e-7 * std::sqrt(cross_term(f, f)));
  }
}

TEST(PairwiseL2, MixturesWithDifferentComponentCounts) {
  std::mt19937 rng(26);
  std::vector<dfmr::Mixture> fs;
  for (int K : {1, 5, 2, 3}) fs.push_back(random_mixture(rng, K, 2));
  const MatrixXd D = dfmr::pairwise_l2(fs);
  for (std::size_t i = 0; i < fs.size(); ++i)
    for (std::size_t j = i + 1; j < fs.size(); ++j) {
      const double dij = D(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
      expect_rel(dij * dij, direct_l2_squared(fs[i], fs[j]), 1e-11);
      expect_rel(dij, dfmr::l2_distance(fs[i], fs[j]), 1e-13);
    }
}

TEST(PairwiseL2, SatisfiesTriangleInequality) {
  std::mt19937 rng(27);
  std::vector<dfmr::Mixture> fs;
  for (int i = 0; i < 6; ++i) fs.push_back(random_mixture(rng, 2 + i % 2, 2, 1.0));
  const MatrixXd D = dfmr::pairwise_l2(fs);
  for (Eigen::Index i = 0; i < 6; ++i)
    for (Eigen::Index j = 0; j < 6; ++j)
      for (Eigen::Index k = 0; k < 6; ++k) EXPECT_LE(D(i, j), D(i, k) + D(k, j) + 1e-12);
}

TEST(PairwiseL2, ThreadCountDoesNotChangeResult) {
  std::mt19937 rng(28);
  std::vector<dfmr::Mixture> fs;
  for (int i = 0; i < 12; ++i) fs.push_back(random_mixture(rng, 1 + i % 5, 4));
  const MatrixXd D1 = dfmr::pairwise_l2(fs, 1);
  for (int n_threads : {2, 3, 0, 64}) {
    const MatrixXd Dn = dfmr::pairwise_l2(fs, n_threads);
    EXPECT_TRUE((Dn.array() == D1.array()).all()) << "n_threads = " << n_threads;
  }
}

TEST(L2Distance, EqualsPairwiseEntry) {
  std::mt19937 rng(29);
  for (int rep = 0; rep < 5; ++rep) {
    const dfmr::Mixture f = random_mixture(rng, 1 + rep, 3), g = random_mixture(rng, 5 - rep, 3);
    EXPECT_EQ(dfmr::l2_distance(f, g), dfmr::pairwise_l2({f, g})(0, 1));
  }
}

TEST(PairwiseL2, EmptyAndSingleton) {
  EXPECT_EQ(dfmr::pairwise_l2({}).size(), 0);
  std::mt19937 rng(30);
  const MatrixXd D = dfmr::pairwise_l2({random_mixture(rng, 2, 2)});
  ASSERT_EQ(D.rows(), 1);
  EXPECT_EQ(D(0, 0), 0.0);
}

TEST(PairwiseL2, RejectsMixedDimensions) {
  std::mt19937 rng(31);
  const dfmr::Mixture f = random_mixture(rng, 2, 2), g = random_mixture(rng, 2, 3);
  EXPECT_THROW(dfmr::pairwise_l2({f, f, g}), std::invalid_argument);
  EXPECT_THROW(dfmr::l2_distance(f, g), std::invalid_argument);
}

// --------------------------------------------------------------- extreme scales

void expect_matches_iso(const std::vector<Iso>& f, const std::vector<Iso>& g) {
  const double dist = dfmr::l2_distance(iso_mixture(f), iso_mixture(g));
  ASSERT_TRUE(std::isfinite(dist));
  ASSERT_GT(dist, 0.0);
  EXPECT_NEAR(std::log(dist), iso_log_distance(f, g), 1e-10);
}

VectorXd point(int d, double value) { return VectorXd::Constant(d, value); }

TEST(L2DistanceExtreme, ComponentsFarApart) {
  VectorXd far = VectorXd::Zero(2);
  far(0) = 1e6;
  expect_matches_iso({{1.0, point(2, 0.0), 1.0}}, {{1.0, far, 1.0}});
  // The cross term underflows completely: ||f - g||^2 = 2 N(0; 0, 2 I) = 2 / (4 pi).
  const double dist = dfmr::l2_distance(iso_mixture({{1.0, point(2, 0.0), 1.0}}), iso_mixture({{1.0, far, 1.0}}));
  expect_rel(dist, std::sqrt(2.0 / (4.0 * kPi)), 1e-14);
  expect_matches_iso({{0.5, point(3, 0.0), 1.0}, {0.5, point(3, 1e6), 2.0}},
                     {{0.5, point(3, 0.5), 1.0}, {0.5, point(3, -1e6), 3.0}});
}

TEST(L2DistanceExtreme, TinyAndHugeCovariances) {
  expect_matches_iso({{1.0, point(3, 0.0), 1e-8}}, {{1.0, point(3, 0.0), 1e8}});
  expect_matches_iso({{1.0, point(3, 0.0), 1e-8}}, {{1.0, point(3, 1e-4), 1e-8}});
  expect_matches_iso({{0.3, point(2, 0.0), 1e-8}, {0.7, point(2, 1e6), 1e8}},
                     {{0.6, point(2, 1e-4), 1e-8}, {0.4, point(2, -1e6), 1.0}});
}

TEST(L2DistanceExtreme, SquaredNormBeyondDoubleRange) {
  // In d = 100 with covariance 1e-8 I, N(0; 0, 2e-8 I) = exp(795) overflows a double while
  // the distance itself, exp(397.6), does not.
  expect_matches_iso({{1.0, point(100, 0.0), 1e-8}}, {{1.0, point(100, 1.0), 1e-8}});
}

TEST(PairwiseL2Extreme, AllEntriesFinite) {
  const std::vector<dfmr::Mixture> fs{
      iso_mixture({{1.0, point(3, 0.0), 1e-8}}), iso_mixture({{1.0, point(3, 0.0), 1e8}}),
      iso_mixture({{0.5, point(3, 1e6), 1e-8}, {0.5, point(3, -1e6), 1e8}}), iso_mixture({{1.0, point(3, 1.0), 1.0}})};
  const MatrixXd D = dfmr::pairwise_l2(fs, 2);
  EXPECT_TRUE(D.allFinite());
  EXPECT_GT(D(0, 1), 0.0);
  EXPECT_NEAR(std::log(D(0, 1)), iso_log_distance({{1.0, point(3, 0.0), 1e-8}}, {{1.0, point(3, 0.0), 1e8}}), 1e-10);
}

}  // namespace

TEST(ScaledDistances, EqualDistancesTimesPowerOfTwo) {
  std::mt19937 gen(7);
  std::normal_distribution<double> z;
  std::vector<dfmr::Mixture> mixtures;
  for (int i = 0; i < 6; ++i) {
    Eigen::VectorXd mu(3);
    for (int j = 0; j < 3; ++j) mu[j] = z(gen);
    mixtures.push_back(iso_mixture({{1.0, mu, 0.005 + 0.001 * i}}));
  }
  const dfmr::ScaledDistances s = dfmr::pairwise_l2_scaled(mixtures, 2);
  const Eigen::MatrixXd D = dfmr::pairwise_l2(mixtures, 2);
  EXPECT_NE(s.exponent, 0);  // norms of these concentrated densities are far from 1
  for (Eigen::Index i = 0; i < D.rows(); ++i)
    for (Eigen::Index j = 0; j < D.cols(); ++j) EXPECT_EQ(std::ldexp(s.scaled(i, j), s.exponent), D(i, j));
}

TEST(ScaledDistances, FlatDensitiesKeepTheirRelativeDistances) {
  // d = 400, variance 300: ||f||^2 = (4 pi 300)^(-200) underflows, and so does every distance.
  const Eigen::Index d = 400;
  const Eigen::VectorXd zero = Eigen::VectorXd::Zero(d);
  const std::vector<dfmr::Mixture> mixtures{iso_mixture({{1.0, zero, 300.0}}),
                                            iso_mixture({{1.0, zero.array() + 1.0, 300.0}}),
                                            iso_mixture({{1.0, zero.array() + 50.0, 300.0}})};
  EXPECT_EQ(dfmr::pairwise_l2(mixtures).maxCoeff(), 0.0);
  const dfmr::ScaledDistances s = dfmr::pairwise_l2_scaled(mixtures);
  // Closed form for equal isotropic covariances: D^2 = 2 c (1 - exp(-|dmu|^2 / (4 v))) with
  // c = ||f||^2; scaled by 2^-exponent, compare in log space.
  const double log_c = -0.5 * static_cast<double>(d) * std::log(4.0 * kPi * 300.0);
  auto expected_log = [&](double sq) { return 0.5 * (std::log(2.0) + log_c + std::log1p(-std::exp(-sq / 1200.0))); };
  EXPECT_NEAR(std::log(s.scaled(0, 1)) + s.exponent * std::log(2.0), expected_log(400.0), 1e-9);
  EXPECT_NEAR(std::log(s.scaled(0, 2)) + s.exponent * std::log(2.0), expected_log(400.0 * 2500.0), 1e-9);
  EXPECT_GT(s.scaled(0, 2), s.scaled(0, 1));
}

TEST(PairwiseL2, IdenticalMixturesAreExactlyZeroApart) {
  const Eigen::VectorXd mu = Eigen::VectorXd::LinSpaced(4, -1.0, 2.0);
  const std::vector<dfmr::Mixture> mixtures{iso_mixture({{1.0, mu, 0.3}}), iso_mixture({{1.0, mu, 0.3}}),
                                            iso_mixture({{1.0, mu, 0.31}})};
  const Eigen::MatrixXd D = dfmr::pairwise_l2(mixtures);
  EXPECT_EQ(D(0, 1), 0.0);
  EXPECT_GT(D(0, 2), 0.0);
}

// Every compiled version of the distance kernel this CPU can run (AVX-512 and AVX2 on an AVX-512
// machine) gives the same bits, lane for lane, for d = 1 to 18 (both parities of the two-row
// blocking, one and several vectors per row), with covariances of order 1, 2^600 and 2^-600 (pivot
// products that leave the double range and are renormalised on the way) and a lane that is not
// positive definite; and each equals log N(mu_a; mu_b, S_a + S_b) from Eigen's Cholesky.
TEST(OverlapKernels, EveryCompiledVersionGivesTheSameBits) {
  const auto& kernels = dfmr::detail::log_overlap_kernels();
  ASSERT_FALSE(kernels.empty());
  std::printf("[          ] %zu compiled version(s) of the distance kernel on this CPU\n", kernels.size());
  constexpr std::size_t L = dfmr::detail::kOverlapLanes;
  std::mt19937 rng(42);
  std::normal_distribution<double> z(0.0, 1.0);
  for (int d = 1; d <= 18; ++d)
    for (const int e : {0, 600, -600}) {
      const std::size_t D = static_cast<std::size_t>(d), q = D * (D + 1) / 2;
      const double scale = std::ldexp(1.0, e), sd = std::ldexp(1.0, e / 2);
      auto pack = [&](const MatrixXd& S, double* out, std::size_t stride) {
        for (std::size_t i = 0; i < D; ++i)
          for (std::size_t j = 0; j <= i; ++j)
            out[(i * (i + 1) / 2 + j) * stride] = S(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
      };
      const MatrixXd Sa = scale * random_spd(rng, d);
      VectorXd mua(d);
      for (int i = 0; i < d; ++i) mua(i) = sd * z(rng);
      std::vector<double> Sa_packed(q), Sb(q * L), mub(D * L);
      pack(Sa, Sa_packed.data(), 1);
      std::vector<MatrixXd> Sbs;
      std::vector<VectorXd> mubs;
      for (std::size_t l = 0; l < L; ++l) {
        const MatrixXd S = scale * random_spd(rng, d, 0.05 + 0.1 * static_cast<double>(l));
        VectorXd mu(d);
        for (int i = 0; i < d; ++i) mu(i) = mua(i) + sd * z(rng) * static_cast<double>(l) / 4.0;
        pack(S, Sb.data() + l, L);
        for (std::size_t i = 0; i < D; ++i) mub[i * L + l] = mu(static_cast<Eigen::Index>(i));
        Sbs.push_back(S);
        mubs.push_back(mu);
      }
      std::vector<std::vector<double>> outs;
      for (const auto kernel : kernels) {
        std::vector<double> A(q * L), zs(D * L), out(L);
        ASSERT_TRUE(kernel(Sa_packed.data(), mua.data(), Sb.data(), mub.data(), D, A.data(), zs.data(), out.data()))
            << "d = " << d << ", scale 2^" << e;
        outs.push_back(out);
      }
      for (std::size_t k = 1; k < outs.size(); ++k)
        for (std::size_t l = 0; l < L; ++l)
          EXPECT_EQ(outs[k][l], outs[0][l]) << "d = " << d << ", scale 2^" << e << ", version " << k << ", lane " << l;
      for (std::size_t l = 0; l < L; ++l) {
        const Eigen::LLT<MatrixXd> llt(Sa + Sbs[l]);
        const VectorXd w = llt.matrixL().solve(mua - mubs[l]);
        double log_det = 0.0;
        for (int i = 0; i < d; ++i) log_det += 2.0 * std::log(llt.matrixLLT()(i, i));
        const double expected = -0.5 * (d * std::log(2.0 * kPi) + log_det + w.squaredNorm());
        EXPECT_NEAR(outs[0][l], expected, 1e-12 * (1.0 + std::abs(expected))) << "d = " << d << ", scale 2^" << e << ", lane " << l;
      }
      // Lane 7 with S_b = -2 S_a: S_a + S_b is negative definite, and every version says so.
      pack(MatrixXd(-2.0 * Sa), Sb.data() + 7, L);
      for (const auto kernel : kernels) {
        std::vector<double> A(q * L), zs(D * L), out(L);
        EXPECT_FALSE(kernel(Sa_packed.data(), mua.data(), Sb.data(), mub.data(), D, A.data(), zs.data(), out.data()))
            << "d = " << d << ", scale 2^" << e;
      }
    }
}
