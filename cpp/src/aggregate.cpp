#include "dfmr/aggregate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

#include "cross_l2.hpp"

namespace dfmr {

namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("dfmr::aggregate: " + message);
}

double resolve_threshold(double threshold, std::size_t m) {
  if (threshold == 0.0) return default_threshold(m);
  if (!(std::isfinite(threshold) && threshold >= 1.0))
    throw std::invalid_argument("dfmr: threshold (kappa) must be a finite number >= 1 (0: the default m^0.1)");
  return threshold;
}

// n distinct indices drawn uniformly from [0, m) by a partial Fisher-Yates shuffle, sorted. The
// generator is std::mt19937_64 (fully specified by the standard) with an explicit unbiased
// bounded draw, so the subset is the same on every platform.
std::vector<std::size_t> random_subset(std::size_t m, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<std::size_t> idx(m);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t range = m - i;
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % range;
    std::uint64_t draw;
    do draw = gen();
    while (draw >= limit);
    std::swap(idx[i], idx[i + static_cast<std::size_t>(draw % range)]);
  }
  idx.resize(n);
  std::sort(idx.begin(), idx.end());
  return idx;
}

// The starts of the reduction over the machines `kept` (indices into `mixtures`), as machine
// indices in increasing order: every kept machine with K components, or, with n_starts > 0, the
// first n_starts of them in `priority` order.
std::vector<std::size_t> start_machines(const std::vector<Mixture>& mixtures, const std::vector<std::size_t>& priority,
                                        int n_components, int n_starts) {
  std::vector<std::size_t> out;
  for (std::size_t i : priority)
    if (mixtures[i].n_components() == static_cast<std::size_t>(n_components)) out.push_back(i);
  if (n_starts > 0 && out.size() > static_cast<std::size_t>(n_starts)) out.resize(static_cast<std::size_t>(n_starts));
  std::sort(out.begin(), out.end());
  return out;
}

// MR and TKB compute no distances: with n_starts > 0 their starts are spread evenly over the
// machine indices, i.e. machines round(t * m / n), t = 0..n-1, each capable one taken in turn.
std::vector<std::size_t> evenly_spaced(const std::vector<std::size_t>& candidates, int n_starts) {
  if (n_starts <= 0 || candidates.size() <= static_cast<std::size_t>(n_starts)) return candidates;
  const std::size_t n = static_cast<std::size_t>(n_starts), c = candidates.size();
  std::vector<std::size_t> out;
  for (std::size_t t = 0; t < n; ++t) out.push_back(candidates[t * c / n]);
  return out;
}

}  // namespace

double default_threshold(std::size_t m) { return std::pow(static_cast<double>(m), 0.1); }

double median(std::vector<double> values) {
  if (values.empty()) throw std::invalid_argument("dfmr::median: no values");
  const std::size_t n = values.size();
  const std::size_t hi = n / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(hi), values.end());
  const double b = values[hi];
  if (n % 2) return b;
  const double a = *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(hi));
  // numpy's lerp at t = 0.5 (t >= 0.5 branch): b - (b - a) * (1 - t).
  return b - (b - a) * 0.5;
}

std::size_t center_index(const Eigen::MatrixXd& D) {
  if (D.rows() == 0 || D.rows() != D.cols()) throw std::invalid_argument("dfmr::center_index: distance matrix must be square and non-empty");
  if (!D.allFinite()) throw std::invalid_argument("dfmr::center_index: distance matrix contains NaN or infinity");
  std::size_t best = 0;
  double best_median = std::numeric_limits<double>::infinity();
  std::vector<double> row(static_cast<std::size_t>(D.cols()));
  for (Eigen::Index i = 0; i < D.rows(); ++i) {
    for (Eigen::Index j = 0; j < D.cols(); ++j) row[static_cast<std::size_t>(j)] = D(i, j);
    const double med = median(row);
    if (med < best_median) best_median = med, best = static_cast<std::size_t>(i);
  }
  return best;
}

FilterDecision filter_row(std::size_t center, const Eigen::VectorXd& row, double threshold) {
  const auto m = static_cast<std::size_t>(row.size());
  if (m == 0 || center >= m) throw std::invalid_argument("dfmr::filter_row: centre outside the row");
  if (!row.allFinite()) throw std::invalid_argument("dfmr::filter_row: distances contain NaN or infinity");
  FilterDecision out;
  out.center = center;
  out.distance_to_center = row;
  out.threshold = resolve_threshold(threshold, m);
  std::vector<double> sorted(row.data(), row.data() + m);
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(m / 2), sorted.end());
  out.radius = sorted[m / 2];
  out.cutoff = out.threshold * out.radius;
  for (std::size_t i = 0; i < m; ++i)
    if (row[static_cast<Eigen::Index>(i)] <= out.cutoff) out.retained.push_back(i);
  return out;
}

FilterDecision distance_filter(const Eigen::MatrixXd& D, double threshold) {
  const std::size_t c = center_index(D);
  return filter_row(c, D.row(static_cast<Eigen::Index>(c)).transpose(), threshold);
}

AggregateResult aggregate(const std::vector<Mixture>& mixtures, Method method, int n_components,
                          const AggregateOptions& opt) {
  const std::size_t m = mixtures.size();
  require(m >= 1, "need at least one local estimate");
  for (const auto& f : mixtures) require(f.dim() == mixtures.front().dim(), "local estimates differ in dimension");
  require(method == Method::coat || n_components >= 1, "n_components must be >= 1");
  require(opt.n_starts >= 0, "n_starts must be >= 0 (0: all)");
  require(opt.n_center_sample >= 1, "n_center_sample must be >= 1");
  require(opt.n_threads >= 0, "n_threads must be >= 0 (0: all hardware threads)");
  require(method != Method::tkb || (opt.alpha >= 0.0 && opt.alpha < 1.0), "alpha must lie in [0, 1)");
  check_sample_sizes(opt.n_samples, m);
  if (method != Method::coat) covariance_model_for_dim(opt.model, mixtures.front().dim());  // E, V need d = 1
  if (method == Method::dfmr) resolve_threshold(opt.threshold, m);  // validate before the O(m^2) work

  std::optional<FilterDecision> filter;
  Eigen::MatrixXd distances;
  int exponent = 0;
  std::vector<std::size_t> sample;
  std::vector<std::size_t> kept(m);
  std::iota(kept.begin(), kept.end(), std::size_t{0});
  if (method == Method::dfmr || method == Method::coat) {
    // COAT uses only the centre; its "filter" keeps the default threshold for the report.
    const double kappa = method == Method::dfmr ? opt.threshold : 0.0;
    if (opt.center == CenterRule::exact) {
      ScaledDistances S = pairwise_l2_scaled(mixtures, opt.n_threads);
      filter = distance_filter(S.scaled, kappa);
      distances = std::move(S.scaled);
      exponent = S.exponent;
    } else {
      sample = random_subset(m, std::min<std::size_t>(m, static_cast<std::size_t>(opt.n_center_sample)), opt.seed);
      const detail::CrossL2 cross(mixtures, opt.n_threads);  // the m norms once, for both requests
      const ScaledDistances to_sample = cross(kept, sample);
      std::size_t c = 0;
      double best = std::numeric_limits<double>::infinity();
      for (std::size_t i = 0; i < m; ++i) {
        const Eigen::VectorXd r = to_sample.scaled.row(static_cast<Eigen::Index>(i)).transpose();
        const double med = median(std::vector<double>(r.data(), r.data() + r.size()));
        if (med < best) best = med, c = i;
      }
      const ScaledDistances row = cross({c}, kept);
      filter = filter_row(c, row.scaled.row(0).transpose(), kappa);
      exponent = row.exponent;
    }
    kept = method == Method::dfmr ? filter->retained : std::vector<std::size_t>{filter->center};
  }

  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (method == Method::coat)
    return AggregateResult{method, mixtures[filter->center], m, std::move(kept), std::move(filter),
                           std::move(distances), exponent, std::move(sample), std::nullopt, {}, nan, 0, true};

  std::vector<std::size_t> starts;
  if (method == Method::dfmr) {
    std::vector<std::size_t> by_distance = kept;
    const Eigen::VectorXd& row = filter->distance_to_center;
    std::stable_sort(by_distance.begin(), by_distance.end(), [&](std::size_t a, std::size_t b) {
      return row[static_cast<Eigen::Index>(a)] < row[static_cast<Eigen::Index>(b)];
    });
    starts = start_machines(mixtures, by_distance, n_components, opt.n_starts);
  } else {
    starts = evenly_spaced(start_machines(mixtures, kept, n_components, 0), opt.n_starts);
  }
  std::vector<Mixture> kept_mixtures, start_mixtures;
  std::vector<double> kept_sizes;
  kept_mixtures.reserve(kept.size());
  for (std::size_t i : kept) {
    kept_mixtures.push_back(mixtures[i]);
    if (!opt.n_samples.empty()) kept_sizes.push_back(opt.n_samples[i]);
  }
  if (starts.empty()) {
    start_mixtures = default_starts(kept_mixtures, n_components, kept_sizes);  // the seeded start
  } else {
    start_mixtures.reserve(starts.size());
    for (std::size_t i : starts) start_mixtures.push_back(mixtures[i]);
  }
  ReduceOptions ropt;
  ropt.max_iter = opt.max_iter;
  ropt.tol = opt.tol;
  ropt.trim = method == Method::tkb ? opt.alpha : 0.0;
  ropt.n_threads = opt.n_threads;
  ropt.model = opt.model;
  ReduceResult red = reduce(pool(kept_mixtures, kept_sizes), start_mixtures, n_components, ropt);
  Mixture mixture = red.mixture;
  const double objective = red.objective;
  const int n_iter = red.n_iter;
  const bool converged = red.converged;
  return AggregateResult{method, std::move(mixture), m, std::move(kept), std::move(filter), std::move(distances),
                         exponent, std::move(sample), std::move(red), std::move(starts), objective, n_iter, converged};
}

Method parse_method(const std::string& name) {
  if (name == "dfmr") return Method::dfmr;
  if (name == "mr") return Method::mr;
  if (name == "coat") return Method::coat;
  if (name == "tkb") return Method::tkb;
  throw std::invalid_argument("dfmr: unknown method '" + name + "' (expected dfmr, mr, coat or tkb)");
}

const char* method_name(Method method) {
  switch (method) {
    case Method::dfmr: return "dfmr";
    case Method::mr: return "mr";
    case Method::coat: return "coat";
    case Method::tkb: return "tkb";
  }
  return "unknown";
}

CenterRule parse_center_rule(const std::string& name) {
  if (name == "exact") return CenterRule::exact;
  if (name == "sampled") return CenterRule::sampled;
  throw std::invalid_argument("dfmr: unknown centre rule '" + name + "' (expected exact or sampled)");
}

}  // namespace dfmr
