// The whole aggregation method: centre (COAT), radius, distance filter, DFMR, MR, COAT and TKB.
// One implementation, called by the Python package, the C API and C++ pipelines alike.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dfmr/distance.hpp"
#include "dfmr/mixture.hpp"
#include "dfmr/reduction.hpp"

namespace dfmr {

enum class Method { dfmr, mr, coat, tkb };

// How the centre is found.
//   exact:   DESIGN.md's rule on the full m x m distance matrix: argmin_i median(D[i, :]).
//   sampled: a sub-quadratic approximation for very many machines. A random subset S of
//            n_center_sample machines (without replacement, from `seed`) is drawn; the centre is
//            argmin_i median_{j in S} D[i, j] (self-distance included when i is in S, ties to the
//            lowest index); then the centre's full row D[c, :] is computed and the filter runs on
//            it exactly as in the exact rule. Cost: m * (n_center_sample + 1) distances instead of
//            m^2 / 2. With a Byzantine fraction alpha the subset holds about alpha * n_center_sample
//            bad machines; a subset with a bad majority (probability shrinking with its size) can
//            move the centre.
enum class CenterRule { exact, sampled };

struct AggregateOptions {
  double threshold = 0.0;     // kappa >= 1 of the filter; 0: the default m^0.1
  double alpha = 0.5;         // trimming level of TKB, in [0, 1)
  int max_iter = 100;         // reduction: maximum MM updates per start
  double tol = 1e-5;          // reduction: relative decrease that stops a start
  // Number of reduction starts; 0: every retained machine with K components (DESIGN.md). With
  // n_starts > 0 only that many are run, chosen by priority: DFMR and COAT take the retained
  // machines nearest the centre (the most central first); MR and TKB, which compute no
  // distances, take machines evenly spaced over the indices. The chosen starts run in index order.
  int n_starts = 0;
  CenterRule center = CenterRule::exact;
  int n_center_sample = 50;   // |S| of the sampled centre rule (capped at m)
  std::uint64_t seed = 0;     // random subset of the sampled centre rule
  int n_threads = 0;          // 0: all hardware threads
  // The sites' sample sizes, one per machine (finite, >= 1), known to the caller: the retained
  // machines R are pooled with weights w_ik n_i / sum_{j in R} n_j (see pool()). Empty: equal
  // sizes, w_ik / |R|. COAT ignores them. The caller decides whether to trust them: a size an
  // estimate claims about itself is attacker-controlled.
  std::vector<double> n_samples;
  // Covariance model of the aggregate's components (ReduceOptions::model): full (VVV) by default.
  // Distances and the filter do not depend on it; COAT returns the centre's estimate as it is.
  CovarianceModel model = CovarianceModel::VVV;
};

// Centre and filter decision on a distance matrix (or on its scaled version: the rules only
// compare distances with each other).
struct FilterDecision {
  std::size_t center = 0;
  Eigen::VectorXd distance_to_center;  // D[center, :]
  double radius = 0.0;                 // entry floor(m/2) of sorted D[center, :]
  double threshold = 0.0;              // kappa
  double cutoff = 0.0;                 // kappa * radius
  std::vector<std::size_t> retained;   // sorted indices with D[center, i] <= cutoff
};

// kappa = m^0.1.
double default_threshold(std::size_t m);

// numpy.quantile(values, 0.5) (linear interpolation, numpy's rounding).
double median(std::vector<double> values);

// argmin_i median(D[i, :]) over the m entries of each row (self-distance included); ties go to
// the lowest index. D must be square, non-empty and finite (std::invalid_argument otherwise).
std::size_t center_index(const Eigen::MatrixXd& D);

// The filter given the centre's row of distances: radius = entry floor(m/2) of the sorted row,
// retained = { i : row[i] <= threshold * radius }. threshold 0 means m^0.1; otherwise >= 1.
FilterDecision filter_row(std::size_t center, const Eigen::VectorXd& row, double threshold);

// center_index then filter_row on D.
FilterDecision distance_filter(const Eigen::MatrixXd& D, double threshold = 0.0);

// What one aggregation computed. Distances are kept as the core computes them: scaled, the
// distance being scaled * 2^exponent (see pairwise_l2_scaled); the filter ran on the scaled values.
struct AggregateResult {
  Method method;
  Mixture mixture;                         // the aggregate
  std::size_t n_machines;
  std::vector<std::size_t> retained;       // sorted machine indices that entered the aggregate
  std::optional<FilterDecision> filter;    // DFMR and COAT (scaled distances)
  Eigen::MatrixXd distances;               // scaled m x m matrix (exact centre rule), else 0 x 0
  int exponent = 0;                        // distances and filter values are scaled by 2^-exponent
  std::vector<std::size_t> center_sample;  // machines S of the sampled centre rule, else empty
  std::optional<ReduceResult> reduction;   // DFMR, MR, TKB
  std::vector<std::size_t> start_machines; // machine index of every reduction start, in start order
  double objective;                        // reduction objective (NaN for COAT)
  int n_iter = 0;                          // MM updates of the winning start (0 for COAT)
  bool converged = true;
};

// Aggregate the m local estimates by `method`. n_components (K >= 1) is ignored by COAT.
// Throws std::invalid_argument on invalid input, std::runtime_error on numerical failure.
AggregateResult aggregate(const std::vector<Mixture>& mixtures, Method method, int n_components,
                          const AggregateOptions& options = {});

Method parse_method(const std::string& name);      // "dfmr" | "mr" | "coat" | "tkb"
const char* method_name(Method method);
CenterRule parse_center_rule(const std::string& name);  // "exact" | "sampled"

}  // namespace dfmr
