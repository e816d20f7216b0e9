// Helpers shared by the C++ tests: random covariances and the Gaussian density written out.
#pragma once

#include <Eigen/Dense>

#include <cmath>
#include <random>

namespace dfmr_test {

inline const double kPi = std::acos(-1.0);

// B B^T / d + ridge I with B a d x d matrix of N(0, 1) draws.
inline Eigen::MatrixXd random_spd(std::mt19937& rng, int d, double ridge = 0.2) {
  std::normal_distribution<double> z(0.0, 1.0);
  Eigen::MatrixXd B(d, d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) B(i, j) = z(rng);
  return B * B.transpose() / d + ridge * Eigen::MatrixXd::Identity(d, d);
}

// N(x; mu, S) from the explicit formula with Eigen's inverse and determinant.
inline double gauss_pdf(const Eigen::VectorXd& x, const Eigen::VectorXd& mu, const Eigen::MatrixXd& S) {
  const Eigen::VectorXd r = x - mu;
  const double q = r.dot(S.inverse() * r);
  return std::exp(-0.5 * q) / std::sqrt((2.0 * kPi * S).determinant());
}

}  // namespace dfmr_test
