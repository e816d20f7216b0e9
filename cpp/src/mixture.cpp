#include "dfmr/mixture.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels.hpp"

namespace dfmr {

namespace {

void require(bool ok, const char* message) {
  if (!ok) throw std::invalid_argument(std::string("dfmr::Mixture: ") + message);
}

// Per-component checks build their message only when they fail: finish() runs them d^2 / 2 times
// per component, and a message built every time cost more than the factorisation.
[[noreturn]] void fail_component(std::size_t k, const char* what) {
  throw std::invalid_argument("dfmr::Mixture: covariance " + std::to_string(k) + " " + what);
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
    if (static_cast<std::size_t>(covariances[k].rows()) != dim_ || static_cast<std::size_t>(covariances[k].cols()) != dim_)
      fail_component(k, "must be d x d");
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
        if (!(std::abs(a - b) <= 1e-8 * (std::abs(a) + std::abs(b)) + 1e-300)) fail_component(k, "is not symmetric");
        // The mean of the two (a + b may overflow where a and b are finite: then halve first).
        const double sum = a + b;
        S[i * d + j] = S[j * d + i] = std::isfinite(sum) ? 0.5 * sum : 0.5 * a + 0.5 * b;
      }
    }
    double* L = chol_.data() + k * d * d;
    std::copy(S, S + d * d, L);
    if (!detail::cholesky_lower(L, d)) fail_component(k, "is not positive definite");
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

void check_sample_sizes(const std::vector<double>& n_samples, std::size_t m) {
  if (n_samples.empty()) return;
  if (n_samples.size() != m)
    throw std::invalid_argument("dfmr: n_samples must hold one sample size per machine (" + std::to_string(m) +
                                "), got " + std::to_string(n_samples.size()));
  for (std::size_t i = 0; i < m; ++i)
    if (!(std::isfinite(n_samples[i]) && n_samples[i] >= 1.0))
      throw std::invalid_argument("dfmr: n_samples[" + std::to_string(i) + "] must be a finite sample size >= 1");
}

Mixture pool(const std::vector<Mixture>& mixtures, const std::vector<double>& n_samples) {
  if (mixtures.empty()) throw std::invalid_argument("dfmr::pool: no mixtures");
  check_sample_sizes(n_samples, mixtures.size());
  // Equal sizes are no sizes: the same 1/m scale, bit for bit.
  const bool sized = !n_samples.empty() && std::any_of(n_samples.begin(), n_samples.end(),
                                                       [&](double n) { return n != n_samples.front(); });
  double total_size = 0.0;
  if (sized)
    for (double n : n_samples) total_size += n;
  const std::size_t d = mixtures.front().dim();
  std::size_t N = 0;
  for (const auto& f : mixtures) {
    if (f.dim() != d) throw std::invalid_argument("dfmr::pool: mixtures differ in dimension");
    N += f.n_components();
  }
  Mixture out;
  out.dim_ = d;
  out.weights_.resize(static_cast<Eigen::Index>(N));
  out.means_.resize(static_cast<Eigen::Index>(N), static_cast<Eigen::Index>(d));
  out.cov_.reserve(N * d * d);
  out.chol_.reserve(N * d * d);
  out.log_det_.resize(static_cast<Eigen::Index>(N));
  const double equal = 1.0 / static_cast<double>(mixtures.size());
  Eigen::Index n = 0;
  for (std::size_t i = 0; i < mixtures.size(); ++i) {
    const Mixture& f = mixtures[i];
    const auto K = static_cast<Eigen::Index>(f.n_components());
    const double scale = sized ? n_samples[i] / total_size : equal;
    out.weights_.segment(n, K) = f.weights_ * scale;
    out.means_.middleRows(n, K) = f.means_;
    out.log_det_.segment(n, K) = f.log_det_;
    out.cov_.insert(out.cov_.end(), f.cov_.begin(), f.cov_.end());
    out.chol_.insert(out.chol_.end(), f.chol_.begin(), f.chol_.end());
    n += K;
  }
  // Weights of the pool sum to 1 up to rounding; renormalise so that they sum to 1 as in any
  // validated mixture (each input's weights were validated, so the pool's are non-negative).
  double total = 0.0;
  for (Eigen::Index i = 0; i < out.weights_.size(); ++i) total += out.weights_[i];
  out.weights_ /= total;
  return out;
}

}  // namespace dfmr
