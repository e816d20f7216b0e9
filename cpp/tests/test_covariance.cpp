// Covariance models: names, the constrained M-step (closed forms written out, membership of the
// model, optimality against feasible perturbations) and the constrained MM update of the reduction.
#include <gtest/gtest.h>

#include <Eigen/Dense>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "dfmr/covariance.hpp"
#include "dfmr/reduction.hpp"
#include "test_support.hpp"

namespace {

using dfmr::CovarianceModel;
using Mat = Eigen::MatrixXd;
using Stack = std::vector<Mat>;

const char* kMultivariate[] = {"EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
                               "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"};

// sum_k [n_k log det S_k + tr(W_k S_k^-1)], written with Eigen's determinant and inverse.
double objective(const Stack& W, const Eigen::VectorXd& n, const Stack& S) {
  double out = 0.0;
  for (std::size_t k = 0; k < W.size(); ++k)
    out += n[static_cast<Eigen::Index>(k)] * std::log(S[k].determinant()) + (W[k] * S[k].inverse()).trace();
  return out;
}

Mat rotation(std::mt19937& rng, int d, double angle) {
  std::normal_distribution<double> z(0.0, 1.0);
  Mat A(d, d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) A(i, j) = z(rng);
  // The Cayley transform of a small skew-symmetric matrix: a rotation near the identity.
  const Mat skew = angle * (A - A.transpose()) / 2.0, I = Mat::Identity(d, d);
  return (I - skew).lu().solve(I + skew);
}

// Perturbations that keep a member of `name` in the model: volumes (together; each for a V volume),
// a common rotation (E orientation), one rotation per component (V orientation), a diagonal shape
// change of determinant 1 (I orientation: together for an E shape, each for a V shape).
std::vector<Stack> feasible_perturbations(const std::string& name, const Stack& S, std::mt19937& rng) {
  const int d = static_cast<int>(S[0].rows());
  const std::size_t K = S.size();
  std::vector<Stack> out;
  for (double c : {0.98, 1.02}) {
    Stack P = S;
    for (Mat& s : P) s *= c;
    out.push_back(P);
    if (name[0] == 'V')
      for (std::size_t k = 0; k < K; ++k) {
        Stack Q = S;
        Q[k] *= c;
        out.push_back(Q);
      }
  }
  for (double angle : {0.02, -0.03}) {
    if (name[2] == 'E') {
      const Mat R = rotation(rng, d, angle);
      Stack P = S;
      for (Mat& s : P) s = R * s * R.transpose();
      out.push_back(P);
    }
    if (name[2] == 'V')
      for (std::size_t k = 0; k < K; ++k) {
        const Mat R = rotation(rng, d, angle);
        Stack P = S;
        P[k] = R * S[k] * R.transpose();
        out.push_back(P);
      }
    if (name[2] == 'I' && name[1] != 'I') {
      std::normal_distribution<double> z(0.0, angle);
      Eigen::VectorXd t(d);
      for (int i = 0; i < d; ++i) t[i] = z(rng);
      t.array() -= t.mean();
      const Mat scale = t.array().exp().matrix().asDiagonal();
      if (name[1] == 'E') {
        Stack P = S;
        for (Mat& s : P) s = scale * s;
        out.push_back(P);
      } else {
        for (std::size_t k = 0; k < K; ++k) {
          Stack P = S;
          P[k] = scale * S[k];
          out.push_back(P);
        }
      }
    }
  }
  return out;
}

bool near(const Mat& a, const Mat& b, double rtol) { return (a - b).cwiseAbs().maxCoeff() <= rtol * b.cwiseAbs().maxCoeff(); }

// The constraints of `name`, checked on the covariances themselves.
void expect_member(const std::string& name, const Stack& S, double rtol = 1e-9) {
  const std::size_t K = S.size();
  const int d = static_cast<int>(S[0].rows());
  for (std::size_t k = 0; k < K; ++k) {
    EXPECT_TRUE(near(S[k], S[k].transpose(), 1e-14)) << name;
    EXPECT_GT(Eigen::SelfAdjointEigenSolver<Mat>(S[k]).eigenvalues().minCoeff(), 0.0) << name;
    if (name[2] == 'I') EXPECT_TRUE(near(S[k], Mat(S[k].diagonal().asDiagonal()), rtol)) << name << ": not diagonal";
    if (name[1] == 'I') EXPECT_TRUE(near(S[k], S[k](0, 0) * Mat::Identity(d, d), rtol)) << name << ": not spherical";
  }
  const double det0 = S[0].determinant();
  for (std::size_t k = 1; k < K; ++k) {
    if (name[0] == 'E') EXPECT_NEAR(S[k].determinant() / det0, 1.0, rtol) << name << ": volumes differ";
    if (name[1] == 'E' && name[2] == 'E')
      EXPECT_TRUE(near(S[k] / std::pow(S[k].determinant(), 1.0 / d), S[0] / std::pow(det0, 1.0 / d), rtol))
          << name << ": shape and orientation differ";
    if (name[2] == 'E') EXPECT_TRUE(near(S[k] * S[0], S[0] * S[k], rtol)) << name << ": orientations differ";
    if (name[1] == 'E') {
      const Eigen::VectorXd a = Eigen::SelfAdjointEigenSolver<Mat>(S[k]).eigenvalues(),
                            b = Eigen::SelfAdjointEigenSolver<Mat>(S[0]).eigenvalues();
      EXPECT_TRUE((a / std::pow(a.prod(), 1.0 / d) - b / std::pow(b.prod(), 1.0 / d)).cwiseAbs().maxCoeff() <= rtol * 10)
          << name << ": shapes differ";
    }
  }
}

void scatters(unsigned seed, int K, int d, Stack& W, Eigen::VectorXd& n) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(5.0, 40.0);
  W.clear();
  n.resize(K);
  for (int k = 0; k < K; ++k) {
    n[k] = u(rng);
    W.push_back(n[k] * dfmr_test::random_spd(rng, d, 0.3) * (1.0 + k));
  }
}

}  // namespace

TEST(CovarianceModel, NamesResolveAsInPython) {
  EXPECT_EQ(dfmr::parse_covariance_model("full", 3), CovarianceModel::VVV);
  EXPECT_EQ(dfmr::parse_covariance_model("tied", 3), CovarianceModel::EEE);
  EXPECT_EQ(dfmr::parse_covariance_model("diag", 3), CovarianceModel::VVI);
  EXPECT_EQ(dfmr::parse_covariance_model("spherical", 3), CovarianceModel::VII);
  EXPECT_EQ(dfmr::parse_covariance_model("tied", 1), CovarianceModel::E);
  for (const char* s : {"full", "diag", "spherical"}) EXPECT_EQ(dfmr::parse_covariance_model(s, 1), CovarianceModel::V);
  EXPECT_EQ(dfmr::parse_covariance_model("EVI", 1), CovarianceModel::E);
  EXPECT_EQ(dfmr::parse_covariance_model("VEE", 1), CovarianceModel::V);
  for (const char* s : kMultivariate) EXPECT_STREQ(dfmr::covariance_model_name(dfmr::parse_covariance_model(s, 4)), s);
  EXPECT_THROW(dfmr::parse_covariance_model("E", 2), std::invalid_argument);
  EXPECT_THROW(dfmr::parse_covariance_model("vvv", 2), std::invalid_argument);
  EXPECT_THROW(dfmr::parse_covariance_model("", 2), std::invalid_argument);
}

// Closed forms written out: VVV W_k / n_k, VII tr(W_k) / (n_k d) I, VVI diag(W_k) / n_k, EEE and E
// sum W / sum n, EEI its diagonal, EII tr(sum W) / (d sum n) I.
TEST(ConstrainedMStep, ClosedFormsAreTheTextbookFormulas) {
  Stack W;
  Eigen::VectorXd n;
  scatters(1, 3, 4, W, n);
  const Mat total = W[0] + W[1] + W[2];
  const double N = n.sum();
  auto run = [&](const char* name) { return dfmr::constrained_m_step(dfmr::parse_covariance_model(name, 4), W, n); };
  const Stack vvv = run("VVV"), vii = run("VII"), vvi = run("VVI"), eee = run("EEE"), eei = run("EEI"), eii = run("EII");
  for (int k = 0; k < 3; ++k) {
    EXPECT_TRUE(near(vvv[k], W[k] / n[k], 1e-14));
    EXPECT_TRUE(near(vii[k], W[k].trace() / (4.0 * n[k]) * Mat::Identity(4, 4), 1e-14));
    EXPECT_TRUE(near(vvi[k], Mat((W[k].diagonal() / n[k]).asDiagonal()), 1e-14));
    EXPECT_TRUE(near(eee[k], total / N, 1e-14));
    EXPECT_TRUE(near(eei[k], Mat((total.diagonal() / N).asDiagonal()), 1e-14));
    EXPECT_TRUE(near(eii[k], total.trace() / (4.0 * N) * Mat::Identity(4, 4), 1e-14));
  }
  Stack w1{Mat::Constant(1, 1, 6.0), Mat::Constant(1, 1, 2.0)};
  const Eigen::VectorXd n1 = Eigen::Vector2d(3.0, 1.0);
  EXPECT_DOUBLE_EQ(dfmr::constrained_m_step(CovarianceModel::E, w1, n1)[1](0, 0), 2.0);
  EXPECT_DOUBLE_EQ(dfmr::constrained_m_step(CovarianceModel::V, w1, n1)[0](0, 0), 2.0);
}

// EEV (the closed form whose cost is its eigen-decompositions: the core has its own symmetric
// eigen-solver) on spectra that are hard for one: repeated eigenvalues, a zero one, a diagonal or
// nearly diagonal matrix, scales 1e-150 and 1e150, d = 2..16. Checked with Eigen's
// SelfAdjointEigenSolver: every S_k has the eigenvalues sum_k omega_k / sum_k n_k (omega_k the
// ascending eigenvalues of W_k), commutes with W_k, and pairs its eigenvalues with W_k's in the same
// order (tr(S_k W_k) = sum_i common_i omega_ki).
TEST(ConstrainedMStep, EevIsTheTextbookFormulaOnHardSpectra) {
  std::mt19937 rng(11);
  for (int d : {2, 3, 5, 10, 16}) {
    for (double scale : {1e-150, 1.0, 1e150}) {
      Stack W;
      W.push_back(scale * Mat::Identity(d, d));
      Eigen::VectorXd ties = Eigen::VectorXd::Ones(d);
      ties.head(d / 2).setConstant(3.0);
      W.push_back(scale * Mat(ties.asDiagonal()));
      Mat low = dfmr_test::random_spd(rng, d, 0.5);
      const Eigen::SelfAdjointEigenSolver<Mat> e(low);
      Eigen::VectorXd v = e.eigenvalues();
      v[0] = 0.0;  // rank deficient
      W.push_back(scale * e.eigenvectors() * v.asDiagonal() * e.eigenvectors().transpose());
      Mat nearly = Mat(Eigen::VectorXd::LinSpaced(d, 1.0, 2.0).asDiagonal());
      nearly(0, d - 1) = nearly(d - 1, 0) = 1e-9;
      W.push_back(scale * nearly);
      W.push_back(scale * dfmr_test::random_spd(rng, d, 0.3));
      const Eigen::VectorXd n = Eigen::VectorXd::LinSpaced(static_cast<Eigen::Index>(W.size()), 1.0, 3.0);
      Eigen::VectorXd common = Eigen::VectorXd::Zero(d);
      std::vector<Eigen::VectorXd> omega;
      for (const Mat& w : W) {
        omega.push_back(Eigen::SelfAdjointEigenSolver<Mat>(w).eigenvalues());
        common += omega.back();
      }
      common /= n.sum();
      const Stack S = dfmr::constrained_m_step(CovarianceModel::EEV, W, n);
      for (std::size_t k = 0; k < W.size(); ++k) {
        SCOPED_TRACE(::testing::Message() << "d " << d << ", scale " << scale << ", k " << k);
        const Eigen::VectorXd got = Eigen::SelfAdjointEigenSolver<Mat>(S[k]).eigenvalues();
        EXPECT_LE((got - common).cwiseAbs().maxCoeff(), 1e-12 * common.maxCoeff());
        // S W - W S relative to the products' size, computed as (S / scale) (W / scale) (no overflow).
        EXPECT_LE(((S[k] / scale) * (W[k] / scale) - (W[k] / scale) * (S[k] / scale)).cwiseAbs().maxCoeff(),
                  1e-12 * (common.maxCoeff() / scale) * (omega[k].maxCoeff() / scale));
        EXPECT_NEAR(((S[k] / scale) * (W[k] / scale)).trace(), (common / scale).dot(omega[k] / scale),
                    1e-12 * (common.maxCoeff() / scale) * (omega[k].maxCoeff() / scale) * d);
      }
    }
  }
}

// Every model's M-step belongs to the model and beats every feasible perturbation of itself (the
// iterative ones run to convergence from no start).
TEST(ConstrainedMStep, EveryModelIsAMemberAndBeatsFeasiblePerturbations) {
  std::mt19937 rng(3);
  for (const char* name : kMultivariate) {
    Stack W;
    Eigen::VectorXd n;
    scatters(2, 3, 3, W, n);
    const Stack S = dfmr::constrained_m_step(dfmr::parse_covariance_model(name, 3), W, n);
    expect_member(name, S, 1e-8);
    const double best = objective(W, n, S);
    for (const Stack& P : feasible_perturbations(name, S, rng)) {
      expect_member(name, P, 1e-8);
      EXPECT_LT(best, objective(W, n, P) + 1e-9 * std::abs(best)) << name;
    }
  }
}

// From a start, the iterative M-steps never raise the objective above the start's.
TEST(ConstrainedMStep, IterativeStepsFromAStartLowerTheObjective) {
  for (const char* name : {"VEI", "VEE", "EVE", "VVE", "VEV"}) {
    const CovarianceModel model = dfmr::parse_covariance_model(name, 3);
    Stack W, W2;
    Eigen::VectorXd n, n2;
    scatters(4, 3, 3, W, n);
    scatters(5, 3, 3, W2, n2);
    const Stack start = dfmr::constrained_m_step(model, W2, n2);  // a member, optimal for other data
    const Stack S = dfmr::constrained_m_step(model, W, n, start);
    expect_member(name, S, 1e-8);
    EXPECT_LE(objective(W, n, S), objective(W, n, start)) << name;
  }
}

TEST(ConstrainedMStep, NoOptimumGivesNaNAndBadShapesThrow) {
  Stack W;
  Eigen::VectorXd n;
  scatters(6, 2, 3, W, n);
  n[1] = 0.0;
  EXPECT_TRUE(std::isnan(dfmr::constrained_m_step(CovarianceModel::VEE, W, n)[0](0, 0)));
  EXPECT_THROW(dfmr::constrained_m_step(CovarianceModel::E, W, n), std::invalid_argument);
  EXPECT_THROW(dfmr::constrained_m_step(CovarianceModel::VVV, W, Eigen::VectorXd::Ones(3)), std::invalid_argument);
  EXPECT_THROW(dfmr::constrained_m_step(CovarianceModel::VVV, {}, Eigen::VectorXd()), std::invalid_argument);
}

// The constrained MM: for every model the reduced mixture belongs to the model, the objective
// never rises, and two threads give the single-threaded result bit for bit.
TEST(ConstrainedReduction, EveryModelGivesAMemberMonotonicallyAndThreadIndependently) {
  std::mt19937 rng(7);
  std::normal_distribution<double> z(0.0, 1.0);
  const int K = 3, d = 3, m = 6;
  std::vector<Mat> S;
  for (int k = 0; k < K; ++k) S.push_back(dfmr_test::random_spd(rng, d, 0.4));
  std::vector<dfmr::Mixture> local;
  for (int i = 0; i < m; ++i) {
    Eigen::MatrixXd mu(K, d);
    std::vector<Mat> cov;
    for (int k = 0; k < K; ++k) {
      for (int j = 0; j < d; ++j) mu(k, j) = 6.0 * k + 0.3 * z(rng);
      cov.push_back(S[static_cast<std::size_t>(k)] + 0.1 * dfmr_test::random_spd(rng, d, 0.0));
    }
    local.emplace_back(Eigen::VectorXd::Constant(K, 1.0 / K), mu, cov);
  }
  for (const char* name : kMultivariate) {
    dfmr::ReduceOptions opt;
    opt.model = dfmr::parse_covariance_model(name, d);
    opt.n_threads = 1;
    const dfmr::ReduceResult one = dfmr::reduce_mixtures(local, K, opt);
    opt.n_threads = 2;
    const dfmr::ReduceResult two = dfmr::reduce_mixtures(local, K, opt);
    Stack cov;
    for (std::size_t k = 0; k < one.mixture.n_components(); ++k) cov.push_back(one.mixture.covariance(k));
    expect_member(name, cov, 1e-8);
    // From the first update on (trace[0] is the start's, taken as given: no member of the model).
    ASSERT_GE(one.objective_trace.size(), 2u) << name;
    for (std::size_t t = 2; t < one.objective_trace.size(); ++t)
      EXPECT_LE(one.objective_trace[t], one.objective_trace[t - 1] * (1.0 + 1e-12)) << name;
    EXPECT_EQ(one.objective, two.objective) << name;
    EXPECT_EQ(one.mixture.means(), two.mixture.means()) << name;
    // Without an update the result would be the start as given, outside the model.
    opt.max_iter = 0;
    if (opt.model != CovarianceModel::VVV) EXPECT_THROW(dfmr::reduce_mixtures(local, K, opt), std::invalid_argument) << name;
  }
}
