// The C API: converts plain arrays to the core's types and every C++ exception to a status code.
#include "dfmr/c_api.h"

#include <cmath>
#include <exception>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "dfmr/aggregate.hpp"

struct dfmr_result {
  dfmr::AggregateResult value;
};

namespace {

thread_local std::string last_error;

int fail(int status, const char* what) {
  last_error = what;
  return status;
}

// Runs body() and maps what it throws to a status; nothing escapes into C.
template <class Body>
int guarded(Body&& body) {
  try {
    last_error.clear();
    body();
    return DFMR_OK;
  } catch (const std::invalid_argument& e) {
    return fail(DFMR_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return fail(DFMR_OUT_OF_MEMORY, "dfmr: out of memory");
  } catch (const std::runtime_error& e) {
    return fail(DFMR_NUMERICAL_ERROR, e.what());
  } catch (const std::exception& e) {
    return fail(DFMR_INTERNAL_ERROR, e.what());
  } catch (...) {
    return fail(DFMR_INTERNAL_ERROR, "dfmr: unknown error");
  }
}

std::vector<dfmr::Mixture> unpack(std::size_t m, std::size_t d, const int64_t* offsets, const double* weights,
                                  const double* means, const double* covariances) {
  if (m == 0) throw std::invalid_argument("dfmr: need at least one mixture (m >= 1)");
  if (d == 0) throw std::invalid_argument("dfmr: dimension d must be >= 1");
  if (!offsets || !weights || !means || !covariances) throw std::invalid_argument("dfmr: NULL input array");
  if (offsets[0] != 0) throw std::invalid_argument("dfmr: offsets[0] must be 0");
  std::vector<dfmr::Mixture> out;
  out.reserve(m);
  for (std::size_t i = 0; i < m; ++i) {
    if (offsets[i + 1] <= offsets[i]) throw std::invalid_argument("dfmr: offsets must increase (every mixture needs a component)");
    const auto a = static_cast<std::size_t>(offsets[i]), K = static_cast<std::size_t>(offsets[i + 1] - offsets[i]);
    out.emplace_back(K, d, weights + a, means + a * d, covariances + a * d * d);
  }
  return out;
}

double unscale(double v, int exponent) { return std::ldexp(v, exponent); }

}  // namespace

extern "C" {

void dfmr_options_default(dfmr_options* options) {
  if (!options) return;
  const dfmr::AggregateOptions o;
  options->threshold = o.threshold;
  options->alpha = o.alpha;
  options->max_iter = o.max_iter;
  options->tol = o.tol;
  options->n_starts = o.n_starts;
  options->center_rule = DFMR_CENTER_EXACT;
  options->n_center_sample = o.n_center_sample;
  options->seed = o.seed;
  options->n_threads = o.n_threads;
}

const char* dfmr_last_error(void) { return last_error.c_str(); }

int dfmr_pairwise_l2(size_t m, size_t d, const int64_t* offsets, const double* weights, const double* means,
                     const double* covariances, int n_threads, double* out) {
  return guarded([&] {
    if (!out) throw std::invalid_argument("dfmr: NULL output array");
    const Eigen::MatrixXd D = dfmr::pairwise_l2(unpack(m, d, offsets, weights, means, covariances), n_threads);
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < m; ++j) out[i * m + j] = D(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
  });
}

int dfmr_aggregate(size_t m, size_t d, const int64_t* offsets, const double* weights, const double* means,
                   const double* covariances, int method, int n_components, const dfmr_options* options,
                   dfmr_result** result) {
  return dfmr_aggregate_ex(m, d, offsets, weights, means, covariances, nullptr, nullptr, method, n_components, options,
                           result);
}

int dfmr_aggregate_ex(size_t m, size_t d, const int64_t* offsets, const double* weights, const double* means,
                      const double* covariances, const double* n_samples, const char* covariance_model, int method,
                      int n_components, const dfmr_options* options, dfmr_result** result) {
  return guarded([&] {
    if (!result) throw std::invalid_argument("dfmr: NULL result pointer");
    *result = nullptr;
    if (method < DFMR_METHOD_DFMR || method > DFMR_METHOD_TKB) throw std::invalid_argument("dfmr: unknown method code");
    dfmr_options c;
    dfmr_options_default(&c);
    if (options) c = *options;
    if (c.center_rule != DFMR_CENTER_EXACT && c.center_rule != DFMR_CENTER_SAMPLED)
      throw std::invalid_argument("dfmr: unknown centre rule code");
    dfmr::AggregateOptions o;
    o.threshold = c.threshold;
    o.alpha = c.alpha;
    o.max_iter = c.max_iter;
    o.tol = c.tol;
    o.n_starts = c.n_starts;
    o.center = c.center_rule == DFMR_CENTER_EXACT ? dfmr::CenterRule::exact : dfmr::CenterRule::sampled;
    o.n_center_sample = c.n_center_sample;
    o.seed = c.seed;
    o.n_threads = c.n_threads;
    if (n_samples) o.n_samples.assign(n_samples, n_samples + m);
    if (covariance_model) o.model = dfmr::parse_covariance_model(covariance_model, d == 0 ? 1 : d);
    if (!(o.max_iter >= 0)) throw std::invalid_argument("dfmr: max_iter must be >= 0");
    if (!(o.tol >= 0.0)) throw std::invalid_argument("dfmr: tol must be >= 0");
    static constexpr dfmr::Method methods[] = {dfmr::Method::dfmr, dfmr::Method::mr, dfmr::Method::coat, dfmr::Method::tkb};
    *result = new dfmr_result{dfmr::aggregate(unpack(m, d, offsets, weights, means, covariances), methods[method],
                                              n_components, o)};
  });
}

void dfmr_result_free(dfmr_result* result) { delete result; }

size_t dfmr_result_n_components(const dfmr_result* r) { return r->value.mixture.n_components(); }
size_t dfmr_result_dim(const dfmr_result* r) { return r->value.mixture.dim(); }

void dfmr_result_mixture(const dfmr_result* r, double* weights, double* means, double* covariances) {
  const dfmr::Mixture& g = r->value.mixture;
  const std::size_t K = g.n_components(), d = g.dim();
  if (weights) std::copy_n(g.weights().data(), K, weights);
  if (means) std::copy_n(g.means().data(), K * d, means);
  if (covariances) std::copy_n(g.covariance_data(), K * d * d, covariances);
}

size_t dfmr_result_n_retained(const dfmr_result* r) { return r->value.retained.size(); }

void dfmr_result_retained(const dfmr_result* r, int64_t* retained) {
  for (std::size_t i = 0; i < r->value.retained.size(); ++i) retained[i] = static_cast<int64_t>(r->value.retained[i]);
}

int64_t dfmr_result_center(const dfmr_result* r) {
  return r->value.filter ? static_cast<int64_t>(r->value.filter->center) : -1;
}

double dfmr_result_radius(const dfmr_result* r) {
  return r->value.filter ? unscale(r->value.filter->radius, r->value.exponent) : std::numeric_limits<double>::quiet_NaN();
}

double dfmr_result_threshold(const dfmr_result* r) {
  return r->value.filter ? r->value.filter->threshold : std::numeric_limits<double>::quiet_NaN();
}

double dfmr_result_cutoff(const dfmr_result* r) {
  return r->value.filter ? unscale(r->value.filter->cutoff, r->value.exponent) : std::numeric_limits<double>::quiet_NaN();
}

int dfmr_result_distance_to_center(const dfmr_result* r, double* distances) {
  return guarded([&] {
    if (!r || !distances) throw std::invalid_argument("dfmr: NULL argument");
    if (!r->value.filter) throw std::invalid_argument("dfmr: this method computed no centre");
    const Eigen::VectorXd& row = r->value.filter->distance_to_center;
    for (Eigen::Index i = 0; i < row.size(); ++i) distances[i] = unscale(row[i], r->value.exponent);
  });
}

double dfmr_result_objective(const dfmr_result* r) { return r->value.objective; }
int dfmr_result_n_iter(const dfmr_result* r) { return r->value.n_iter; }
int dfmr_result_converged(const dfmr_result* r) { return r->value.converged ? 1 : 0; }

}  // extern "C"
