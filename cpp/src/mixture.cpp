#include "dfmr/mixture.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels.hpp"

namespace dfmr {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("dfmr::Mixture: " + message);
}

}  // namespace

Mixture::Mixture(const Eigen::VectorXd& weights, const Eigen::MatrixXd& means,
                 const std::vector<Eigen::MatrixXd>& covariances)
    : dim_(static_cast<std::size_t>(means.cols())), weights_(weights), means_(means) {
  const auto K = static_cast<std::size_t>(weights.size());
  require(static_cast<std::size_t>(means.rows()) == K, "means must have one row per weight");
  require(covariances.size() == K, "need one covariance per weight");
  cov_.resize(K * dim_ * dim_);
  for (std::size_t k = 0; k < K; ++k) {
    require(static_cast<std::size_t>(covariances[k].rows()) == dim_ &&
                static_cast<std::size_t>(covariances[k].cols()) == dim_,
            "covariance " + std::to_string(k) + " must be d x d");
    Eigen::Map<RowMatrix>(cov_.data() + k * dim_ * dim_, static_cast<Eigen::Index>(dim_),
                          static_cast<Eigen::Index>(dim_)) = covariances[k];
  }
  finish();
}

Mixture::Mixture(std::size_t n_components, std::size_t dim, const double* weights, const double* means,
                 const double* covariances)
    : dim_(dim),
      weights_(Eigen::Map<const Eigen::VectorXd>(weights, static_cast<Eigen::Index>(n_components))),
      means_(Eigen::Map<const RowMatrix>(means, static_cast<Eigen::Index>(n_components),
                                         static_cast<Eigen::Index>(dim))),
      cov_(covariances, covariances + n_components * dim * dim) {
  finish();
}

void Mixture::finish() {
  const std::size_t K = n_components(), d = dim_;
  require(K >= 1, "a mixture needs at least one component");
  require(d >= 1, "dimension must be at least 1");
  require(weights_.allFinite() && means_.allFinite(), "weights and means must be finite");
  require((weights_.array() >= 0.0).all(), "weights must be non-negative");
  require(std::abs(weights_.sum() - 1.0) <= 1e-8, "weights must sum to 1");
  chol_ = cov_;
  log_det_.resize(static_cast<Eigen::Index>(K));
  for (std::size_t k = 0; k < K; ++k) {
    double* S = cov_.data() + k * d * d;
    for (std::size_t i = 0; i < d; ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        const double a = S[i * d + j], b = S[j * d + i];
        require(std::isfinite(a) && std::isfinite(b), "covariances must be finite");
        require(std::abs(a - b) <= 1e-8 * (std::abs(a) + std::abs(b)) + 1e-300,
                "covariance " + std::to_string(k) + " is not symmetric");
        S[i * d + j] = S[j * d + i] = 0.5 * (a + b);
      }
    }
    double* L = chol_.data() + k * d * d;
    std::copy(S, S + d * d, L);
    require(detail::cholesky_lower(L, d), "covariance " + std::to_string(k) + " is not positive definite");
    for (std::size_t i = 0; i < d; ++i)
      for (std::size_t j = i + 1; j < d; ++j) L[i * d + j] = 0.0;
    log_det_[static_cast<Eigen::Index>(k)] = detail::log_det_chol(L, d);
  }
}

Eigen::Map<const RowMatrix> Mixture::covariance(std::size_t k) const {
  const auto d = static_cast<Eigen::Index>(dim_);
  return Eigen::Map<const RowMatrix>(cov_.data() + k * dim_ * dim_, d, d);
}

Eigen::Map<const RowMatrix> Mixture::cholesky(std::size_t k) const {
  const auto d = static_cast<Eigen::Index>(dim_);
  return Eigen::Map<const RowMatrix>(chol_.data() + k * dim_ * dim_, d, d);
}

double Mixture::log_pdf(const Eigen::VectorXd& x) const {
  if (static_cast<std::size_t>(x.size()) != dim_) throw std::invalid_argument("dfmr::Mixture::log_pdf: wrong dimension");
  const std::size_t K = n_components(), d = dim_;
  std::vector<double> terms(K), z(d);
  double top = -INFINITY;
  for (std::size_t k = 0; k < K; ++k) {
    for (std::size_t i = 0; i < d; ++i) z[i] = x[static_cast<Eigen::Index>(i)] - means_(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(i));
    detail::forward_solve(chol_.data() + k * d * d, z.data(), d);
    terms[k] = std::log(weights_[static_cast<Eigen::Index>(k)]) -
               0.5 * (static_cast<double>(d) * detail::kLog2Pi + log_det_[static_cast<Eigen::Index>(k)] + detail::dot(z.data(), z.data(), d));
    top = std::max(top, terms[k]);
  }
  if (top == -INFINITY) return top;
  double s = 0.0;
  for (double t : terms) s += std::exp(t - top);
  return top + std::log(s);
}

Mixture pool(const std::vector<Mixture>& mixtures) {
  if (mixtures.empty()) throw std::invalid_argument("dfmr::pool: no mixtures");
  const std::size_t d = mixtures.front().dim();
  std::size_t N = 0;
  for (const auto& f : mixtures) {
    if (f.dim() != d) throw std::invalid_argument("dfmr::pool: mixtures differ in dimension");
    N += f.n_components();
  }
  std::vector<double> w(N), mu(N * d), cov(N * d * d);
  const double scale = 1.0 / static_cast<double>(mixtures.size());
  std::size_t n = 0;
  for (const auto& f : mixtures) {
    for (std::size_t k = 0; k < f.n_components(); ++k, ++n) {
      w[n] = f.weights()[static_cast<Eigen::Index>(k)] * scale;
      for (std::size_t i = 0; i < d; ++i) mu[n * d + i] = f.means()(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(i));
      std::copy(f.covariance_data() + k * d * d, f.covariance_data() + (k + 1) * d * d, cov.begin() + static_cast<std::ptrdiff_t>(n * d * d));
    }
  }
  // Weights of the pool sum to 1 up to rounding; renormalise so validation is exact.
  double total = 0.0;
  for (double v : w) total += v;
  for (double& v : w) v /= total;
  return Mixture(N, d, w.data(), mu.data(), cov.data());
}

}  // namespace dfmr
