// Gaussian mixture parameters with cached Cholesky factors and log-determinants.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <vector>

namespace dfmr {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// f(x) = sum_k w_k N(x; mu_k, Sigma_k). Immutable after construction.
//
// Construction validates the parameters (finite, weights >= 0 summing to 1 within 1e-8,
// covariances symmetric positive definite) and throws std::invalid_argument otherwise.
// Covariances are stored row-major, component after component, with their lower
// Cholesky factors (L L^T = Sigma) and log-determinants cached for the distance and
// reduction kernels.
class Mixture {
 public:
  // weights: K; means: K x d (row k is mu_k); covariances: K matrices of d x d.
  Mixture(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means,
          const std::vector<Eigen::MatrixXd>& covariances);

  // Same, from contiguous row-major buffers: weights[K], means[K*d], covariances[K*d*d].
  Mixture(std::size_t n_components, std::size_t dim, const double* weights, const double* means,
          const double* covariances);

  std::size_t n_components() const { return static_cast<std::size_t>(weights_.size()); }
  std::size_t dim() const { return dim_; }

  const Eigen::VectorXd& weights() const { return weights_; }
  const RowMatrix& means() const { return means_; }
  Eigen::Map<const RowMatrix> covariance(std::size_t k) const;
  Eigen::Map<const RowMatrix> cholesky(std::size_t k) const;  // lower triangular
  double log_det(std::size_t k) const { return log_det_[static_cast<Eigen::Index>(k)]; }

  // Row-major buffers of all covariances / Cholesky factors (K*d*d each).
  const double* covariance_data() const { return cov_.data(); }
  const double* cholesky_data() const { return chol_.data(); }

  // log f(x) for one point, evaluated with log-sum-exp.
  double log_pdf(const Eigen::VectorXd& x) const;

 private:
  friend Mixture pool(const std::vector<Mixture>& mixtures, const std::vector<double>& n_samples);
  Mixture() = default;  // for pool(), which assembles already validated and factorised components
  void finish();

  std::size_t dim_ = 0;
  Eigen::VectorXd weights_;
  RowMatrix means_;
  std::vector<double> cov_;
  std::vector<double> chol_;
  Eigen::VectorXd log_det_;
};

// Concatenate mixtures into one mixture: the pooled mixture that mixture reduction reduces.
// Without sizes (n_samples empty), or with m equal ones, every weight is divided by the number of
// mixtures: (1/m) sum_i f_i. With the sizes n_i of the m sites (one per mixture, finite, >= 1;
// std::invalid_argument otherwise), component k of mixture i has weight w_ik n_i / sum_j n_j:
// the pool is the mixture of all the sites' data, a site of size 2n weighing as two sites of
// size n. Equal sizes take the 1/m path, so that they give exactly the unweighted pool. The
// components' Cholesky factors and log-determinants are taken over from the mixtures (they are
// exactly what a new factorisation of the same matrices would give), not recomputed.
Mixture pool(const std::vector<Mixture>& mixtures, const std::vector<double>& n_samples = {});

// Throws std::invalid_argument unless n_samples is empty or holds m finite sizes >= 1.
void check_sample_sizes(const std::vector<double>& n_samples, std::size_t m);

}  // namespace dfmr
