// Tests of dfmr::Mixture (validation, cached factorisations, log-density) and dfmr::pool.
// Reference values are computed here with Eigen's dense solvers or closed-form densities.
#include <dfmr/mixture.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
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
constexpr double kInf = std::numeric_limits<double>::infinity();
struct Params {
  VectorXd w;
  MatrixXd mu;
  std::vector<MatrixXd> cov;
};

// A valid two-component bivariate mixture, mutated by the validation tests.
Params valid_params() {
  Params p;
  p.w = VectorXd(2);
  p.w << 0.4, 0.6;
  p.mu = MatrixXd(2, 2);
  p.mu << 0.0, 1.0, -2.0, 3.0;
  MatrixXd S0(2, 2), S1(2, 2);
  S0 << 2.0, 0.3, 0.3, 1.0;
  S1 << 0.5, -0.1, -0.1, 0.7;
  p.cov = {S0, S1};
  return p;
}

dfmr::Mixture build(const Params& p) { return dfmr::Mixture(p.w, p.mu, p.cov); }

Params random_params(std::mt19937& rng, int K, int d) {
  std::uniform_real_distribution<double> u(0.5, 1.5);
  std::normal_distribution<double> z(0.0, 2.0);
  Params p;
  p.w = VectorXd(K);
  p.mu = MatrixXd(K, d);
  for (int k = 0; k < K; ++k) {
    p.w(k) = u(rng);
    for (int i = 0; i < d; ++i) p.mu(k, i) = z(rng);
    p.cov.push_back(random_spd(rng, d));
  }
  p.w /= p.w.sum();
  return p;
}

// log N(x; mu, S) through Eigen's LLT.
double gauss_log_pdf_llt(const VectorXd& x, const VectorXd& mu, const MatrixXd& S) {
  const Eigen::LLT<MatrixXd> llt(S);
  const VectorXd z = llt.matrixL().solve(x - mu);
  const double log_det = 2.0 * llt.matrixL().toDenseMatrix().diagonal().array().log().sum();
  return -0.5 * (static_cast<double>(x.size()) * std::log(2.0 * kPi) + log_det + z.squaredNorm());
}

void expect_close(double actual, double expected, double rel) {
  EXPECT_NEAR(actual, expected, rel * std::max(1.0, std::abs(expected)));
}

// ---------------------------------------------------------------- construction

TEST(Mixture, ExposesItsParameters) {
  const Params p = valid_params();
  const dfmr::Mixture f = build(p);
  EXPECT_EQ(f.n_components(), 2u);
  EXPECT_EQ(f.dim(), 2u);
  EXPECT_EQ(f.weights(), p.w);
  EXPECT_EQ(MatrixXd(f.means()), p.mu);
  for (std::size_t k = 0; k < 2; ++k) EXPECT_EQ(MatrixXd(f.covariance(k)), p.cov[k]);
}

TEST(Mixture, BufferConstructorMatchesEigenConstructor) {
  std::mt19937 rng(11);
  const Params p = random_params(rng, 3, 4);
  const dfmr::Mixture a = build(p);
  std::vector<double> mu, cov;
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 4; ++i) mu.push_back(p.mu(k, i));
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) cov.push_back(p.cov[static_cast<std::size_t>(k)](i, j));
  }
  const dfmr::Mixture b(3, 4, p.w.data(), mu.data(), cov.data());
  EXPECT_EQ(b.weights(), a.weights());
  EXPECT_EQ(b.means(), a.means());
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(MatrixXd(b.covariance(k)), MatrixXd(a.covariance(k)));
    EXPECT_EQ(MatrixXd(b.cholesky(k)), MatrixXd(a.cholesky(k)));
    EXPECT_EQ(b.log_det(k), a.log_det(k));
  }
}

TEST(MixtureValidation, RejectsNegativeWeights) {
  Params p = valid_params();
  p.w << 1.2, -0.2;  // sums to 1
  EXPECT_THROW(build(p), std::invalid_argument);
}

TEST(MixtureValidation, RejectsWeightsNotSummingToOne) {
  Params p = valid_params();
  p.w << 0.4, 0.5;
  EXPECT_THROW(build(p), std::invalid_argument);
  p.w << 0.4, 0.6 + 1e-7;
  EXPECT_THROW(build(p), std::invalid_argument);
  p.w << 0.4, 0.6 + 1e-10;  // within the documented 1e-8
  EXPECT_NO_THROW(build(p));
}

TEST(MixtureValidation, RejectsNonFiniteWeightsAndMeans) {
  for (double bad : {kNaN, kInf, -kInf}) {
    Params p = valid_params();
    p.w(1) = bad;
    EXPECT_THROW(build(p), std::invalid_argument) << bad;
    p = valid_params();
    p.mu(1, 0) = bad;
    EXPECT_THROW(build(p), std::invalid_argument) << bad;
  }
}

TEST(MixtureValidation, RejectsNonFiniteCovariances) {
  for (double bad : {kNaN, kInf, -kInf}) {
    Params p = valid_params();
    p.cov[1](0, 1) = p.cov[1](1, 0) = bad;
    EXPECT_THROW(build(p), std::invalid_argument) << "off-diagonal " << bad;
    p = valid_params();
    p.cov[0](1, 1) = bad;
    EXPECT_THROW(build(p), std::invalid_argument) << "diagonal " << bad;
  }
}

TEST(MixtureValidation, RejectsNonSymmetricCovariance) {
  Params p = valid_params();
  p.cov[0](0, 1) = 0.5;  // (1, 0) stays 0.3
  EXPECT_THROW(build(p), std::invalid_argument);
  p = valid_params();
  p.cov[1](1, 0) += 1e-6;
  EXPECT_THROW(build(p), std::invalid_argument);
}

TEST(MixtureValidation, AcceptsCovarianceSymmetricUpToRounding) {
  Params p = valid_params();
  p.cov[0](0, 1) *= 1.0 + 1e-14;
  const dfmr::Mixture f = build(p);
  const MatrixXd S = f.covariance(0);
  EXPECT_NEAR(S(0, 1), 0.3, 1e-13);
  EXPECT_NEAR(S(1, 0), 0.3, 1e-13);
}

// Entries near the top of the double range: symmetrising (a + b) / 2 must not overflow to inf and
// turn a positive-definite matrix into a rejected one.
TEST(MixtureValidation, AcceptsPositiveDefiniteCovarianceNearTheTopOfTheRange) {
  const double w = 1.0, mu[2] = {0.0, 0.0}, cov[4] = {1.5e308, 1e308, 1e308, 1.5e308};
  const dfmr::Mixture f(1, 2, &w, mu, cov);
  EXPECT_EQ(f.covariance(0)(0, 1), 1e308);
  EXPECT_EQ(f.covariance(0)(1, 0), 1e308);
  // log det = log(1.5^2 - 1) + 2 * 308 log 10, computed apart from the factorisation.
  expect_close(f.log_det(0), std::log(1.25) + 616.0 * std::log(10.0), 1e-13);
}

TEST(MixtureValidation, RejectsCovarianceThatIsNotPositiveDefinite) {
  const std::vector<std::vector<double>> bad = {
      {1.0, 2.0, 2.0, 1.0},   // indefinite
      {1.0, 1.0, 1.0, 1.0},   // singular
      {0.0, 0.0, 0.0, 0.0},   // zero
      {-1.0, 0.0, 0.0, 1.0},  // negative variance
  };
  for (const auto& v : bad) {
    Params p = valid_params();
    p.cov[1] << v[0], v[1], v[2], v[3];
    EXPECT_THROW(build(p), std::invalid_argument) << v[0] << " " << v[1] << " " << v[3];
  }
}

TEST(MixtureValidation, RejectsShapeMismatches) {
  Params p = valid_params();
  p.mu = MatrixXd::Zero(3, 2);  // three means, two weights
  EXPECT_THROW(build(p), std::invalid_argument);

  p = valid_params();
  p.cov.pop_back();  // one covariance for two weights
  EXPECT_THROW(build(p), std::invalid_argument);

  p = valid_params();
  p.cov[1] = MatrixXd::Identity(3, 3);  // 3 x 3 in dimension 2
  EXPECT_THROW(build(p), std::invalid_argument);

  p = valid_params();
  p.cov[0] = MatrixXd::Identity(2, 3);  // not square
  EXPECT_THROW(build(p), std::invalid_argument);

  p.w = VectorXd(0);  // no components
  p.mu = MatrixXd(0, 2);
  p.cov.clear();
  EXPECT_THROW(build(p), std::invalid_argument);

  p.w = VectorXd::Ones(1);  // dimension 0
  p.mu = MatrixXd(1, 0);
  p.cov = {MatrixXd(0, 0)};
  EXPECT_THROW(build(p), std::invalid_argument);
}

TEST(MixtureValidation, BufferConstructorValidatesToo) {
  const std::vector<double> mu{0.0, 1.0};
  const std::vector<double> cov{1.0, 2.0};  // K = 2 variances in d = 1
  const std::vector<double> w_negative{1.5, -0.5};
  EXPECT_THROW(dfmr::Mixture(2, 1, w_negative.data(), mu.data(), cov.data()), std::invalid_argument);
  const std::vector<double> w{0.5, 0.5};
  const std::vector<double> cov_bad{1.0, -1.0};
  EXPECT_THROW(dfmr::Mixture(2, 1, w.data(), mu.data(), cov_bad.data()), std::invalid_argument);
  EXPECT_NO_THROW(dfmr::Mixture(2, 1, w.data(), mu.data(), cov.data()));
}

// ------------------------------------------------------- cached factorisations

TEST(Mixture, CholeskyFactorReproducesCovariance) {
  std::mt19937 rng(3);
  for (int d : {1, 2, 3, 6}) {
    const dfmr::Mixture f = build(random_params(rng, 3, d));
    for (std::size_t k = 0; k < f.n_components(); ++k) {
      const MatrixXd L = f.cholesky(k);
      const MatrixXd S = f.covariance(k);
      for (int i = 0; i < d; ++i) {
        EXPECT_GT(L(i, i), 0.0);
        for (int j = i + 1; j < d; ++j) EXPECT_EQ(L(i, j), 0.0) << "upper triangle must be zero";
      }
      EXPECT_LE((L * L.transpose() - S).norm(), 1e-13 * S.norm()) << "d = " << d << ", k = " << k;
    }
  }
}

TEST(Mixture, LogDetMatchesEigenDeterminant) {
  std::mt19937 rng(5);
  for (int d : {1, 2, 3, 5}) {
    const Params p = random_params(rng, 4, d);
    const dfmr::Mixture f = build(p);
    for (std::size_t k = 0; k < 4; ++k) expect_close(f.log_det(k), std::log(p.cov[k].determinant()), 1e-12);
  }
  // Very small and very large scales: the log-determinant of s I_3 is 3 log s.
  for (double s : {1e-8, 1e8}) {
    Params p = valid_params();
    p.mu = MatrixXd::Zero(2, 3);
    p.cov = {s * MatrixXd::Identity(3, 3), MatrixXd::Identity(3, 3)};
    const dfmr::Mixture f = build(p);
    expect_close(f.log_det(0), 3.0 * std::log(s), 1e-13);
    expect_close(f.log_det(0), std::log(p.cov[0].determinant()), 1e-13);
  }
}

// ------------------------------------------------------------------ log-density

TEST(MixtureLogPdf, OneDimensionalMatchesExplicitDensity) {
  const std::vector<double> w{0.2, 0.5, 0.3}, m{-2.0, 0.5, 3.0}, v{0.5, 1.5, 0.2};
  const dfmr::Mixture f(3, 1, w.data(), m.data(), v.data());
  for (int i = 0; i <= 48; ++i) {
    const double x = -6.0 + 0.25 * i;
    double density = 0.0;
    for (std::size_t k = 0; k < 3; ++k)
      density += w[k] / std::sqrt(2.0 * kPi * v[k]) * std::exp(-(x - m[k]) * (x - m[k]) / (2.0 * v[k]));
    expect_close(f.log_pdf(VectorXd::Constant(1, x)), std::log(density), 1e-13);
  }
}

TEST(MixtureLogPdf, FarTailIsComputedInLogSpace) {
  // exp(log-density) underflows at these points; the reference is a log-sum-exp.
  const std::vector<double> w{0.2, 0.5, 0.3}, m{-2.0, 0.5, 3.0}, v{0.5, 1.5, 0.2};
  const dfmr::Mixture f(3, 1, w.data(), m.data(), v.data());
  for (double x : {-200.0, 60.0, 500.0}) {
    std::vector<double> t(3);
    for (std::size_t k = 0; k < 3; ++k)
      t[k] = std::log(w[k]) - 0.5 * std::log(2.0 * kPi * v[k]) - (x - m[k]) * (x - m[k]) / (2.0 * v[k]);
    const double top = *std::max_element(t.begin(), t.end());
    double s = 0.0;
    for (double tk : t) s += std::exp(tk - top);
    const double expected = top + std::log(s);
    const double got = f.log_pdf(VectorXd::Constant(1, x));
    ASSERT_TRUE(std::isfinite(got)) << x;
    expect_close(got, expected, 1e-13);
  }
}

TEST(MixtureLogPdf, ThreeDimensionalMatchesEigenDensity) {
  std::mt19937 rng(7);
  std::normal_distribution<double> z(0.0, 2.0);
  for (int rep = 0; rep < 3; ++rep) {
    const Params p = random_params(rng, 4, 3);
    const dfmr::Mixture f = build(p);
    for (int i = 0; i < 20; ++i) {
      VectorXd x(3);
      for (int j = 0; j < 3; ++j) x(j) = z(rng);
      double density = 0.0, top = -kInf;
      std::vector<double> logs;
      for (int k = 0; k < 4; ++k) {
        const VectorXd mu = p.mu.row(k).transpose();
        density += p.w(k) * gauss_pdf(x, mu, p.cov[static_cast<std::size_t>(k)]);
        logs.push_back(std::log(p.w(k)) + gauss_log_pdf_llt(x, mu, p.cov[static_cast<std::size_t>(k)]));
        top = std::max(top, logs.back());
      }
      double s = 0.0;
      for (double l : logs) s += std::exp(l - top);
      const double got = f.log_pdf(x);
      expect_close(got, std::log(density), 1e-12);
      expect_close(got, top + std::log(s), 1e-12);
    }
  }
}

TEST(MixtureLogPdf, ZeroWeightComponentDoesNotContribute) {
  Params p = valid_params();
  p.w << 0.0, 1.0;
  const dfmr::Mixture f = build(p);
  const VectorXd x = (VectorXd(2) << 0.3, -0.7).finished();
  expect_close(f.log_pdf(x), std::log(gauss_pdf(x, p.mu.row(1).transpose(), p.cov[1])), 1e-13);
}

TEST(MixtureLogPdf, RejectsWrongDimension) {
  const dfmr::Mixture f = build(valid_params());
  EXPECT_THROW(f.log_pdf(VectorXd::Zero(3)), std::invalid_argument);
}

// ------------------------------------------------------------------------ pool

TEST(Pool, DividesWeightsByNumberOfMixturesAndKeepsComponents) {
  std::mt19937 rng(13);
  const std::vector<Params> ps{random_params(rng, 2, 2), random_params(rng, 3, 2), random_params(rng, 1, 2)};
  std::vector<dfmr::Mixture> fs;
  for (const auto& p : ps) fs.push_back(build(p));
  const dfmr::Mixture pooled = dfmr::pool(fs);
  ASSERT_EQ(pooled.n_components(), 6u);
  ASSERT_EQ(pooled.dim(), 2u);
  EXPECT_NEAR(pooled.weights().sum(), 1.0, 1e-15);
  std::size_t n = 0;
  for (const auto& p : ps) {
    for (int k = 0; k < p.w.size(); ++k, ++n) {
      EXPECT_NEAR(pooled.weights()(static_cast<Eigen::Index>(n)), p.w(k) / 3.0, 1e-15);
      EXPECT_EQ(VectorXd(pooled.means().row(static_cast<Eigen::Index>(n))), VectorXd(p.mu.row(k)));
      EXPECT_EQ(MatrixXd(pooled.covariance(n)), p.cov[static_cast<std::size_t>(k)]);
    }
  }
  // The pooled density is the average of the densities.
  for (const VectorXd& x : {VectorXd::Zero(2).eval(), (VectorXd(2) << 1.5, -2.0).finished()}) {
    double avg = 0.0;
    for (const auto& f : fs) avg += std::exp(f.log_pdf(x)) / 3.0;
    expect_close(pooled.log_pdf(x), std::log(avg), 1e-13);
  }
}

// pool() takes the components' factorisations over from its inputs instead of factorising again:
// the result must be exactly the mixture the validating constructor builds from the concatenated
// parameters (weights times 1/m, then renormalised by their sum in order), bit for bit,
// including the cached Cholesky factors and log-determinants.
TEST(Pool, EqualsTheValidatedMixtureOfTheConcatenatedParametersBitForBit) {
  std::mt19937 rng(29);
  std::vector<dfmr::Mixture> fs;
  std::vector<double> w, mu, cov;
  for (int i = 0; i < 7; ++i) {
    const Params p = random_params(rng, 1 + i % 4, 5);
    fs.push_back(build(p));
    const dfmr::Mixture& f = fs.back();
    for (std::size_t k = 0; k < f.n_components(); ++k) {
      w.push_back(f.weights()(static_cast<Eigen::Index>(k)) * (1.0 / 7.0));
      for (std::size_t j = 0; j < 5; ++j) mu.push_back(f.means()(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(j)));
    }
    cov.insert(cov.end(), f.covariance_data(), f.covariance_data() + f.n_components() * 25);
  }
  double total = 0.0;
  for (double v : w) total += v;
  for (double& v : w) v /= total;
  const dfmr::Mixture expected(w.size(), 5, w.data(), mu.data(), cov.data());
  const dfmr::Mixture pooled = dfmr::pool(fs);
  ASSERT_EQ(pooled.n_components(), expected.n_components());
  ASSERT_EQ(pooled.dim(), 5u);
  const std::size_t N = expected.n_components();
  EXPECT_EQ(pooled.weights(), expected.weights());
  EXPECT_EQ(pooled.means(), expected.means());
  EXPECT_TRUE(std::equal(pooled.covariance_data(), pooled.covariance_data() + N * 25, expected.covariance_data()));
  EXPECT_TRUE(std::equal(pooled.cholesky_data(), pooled.cholesky_data() + N * 25, expected.cholesky_data()));
  for (std::size_t n = 0; n < N; ++n) EXPECT_EQ(pooled.log_det(n), expected.log_det(n)) << n;
}

TEST(Pool, RejectsEmptyListAndMixedDimensions) {
  EXPECT_THROW(dfmr::pool({}), std::invalid_argument);
  std::mt19937 rng(17);
  const std::vector<dfmr::Mixture> fs{build(random_params(rng, 2, 2)), build(random_params(rng, 2, 3))};
  EXPECT_THROW(dfmr::pool(fs), std::invalid_argument);
}

}  // namespace
