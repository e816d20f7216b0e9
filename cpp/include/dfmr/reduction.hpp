// Mixture reduction by minimising the composite transportation divergence with KL cost
// (Zhang & Chen 2022), and its trimmed variant (trimmed k-barycenter).
#pragma once

#include <Eigen/Core>

#include <vector>

#include "dfmr/covariance.hpp"
#include "dfmr/mixture.hpp"

namespace dfmr {

struct ReduceOptions {
  int max_iter = 100;     // maximum number of MM updates per start
  double tol = 1e-5;      // stop when (obj_prev - obj) / max(obj_prev, obj, 1) < tol
  double trim = 0.0;      // trimming level alpha in [0, 1): 0 is plain MR, > 0 is TKB
  int n_threads = 0;      // starts run in parallel; 0: all hardware threads (negative: invalid)
  // A start whose transport plan becomes, up to relabelling, one that an earlier start reached
  // before its last step is cut short: the rest of its run is the earlier start's, so its final
  // objective is known and it cannot win. A start whose plan repeats (a fixed point) stops without
  // computing the step that confirms it (with tol > 0), which only the winner then computes.
  // Results are bit-identical either way; false runs every step of every start (for tests and
  // measurements).
  bool share_trajectories = true;
  // The covariance model of the reduced components (covariance.hpp). Full (VVV) is the moment
  // match of DESIGN.md. Any other model replaces the update's moment-matched covariances by the
  // model's constrained M-step on the matched scatters W_k = n_k Vbar_k and masses n_k, which
  // minimises the transport cost over the model (exactly for the closed forms; for the iterative
  // ones solved afresh to convergence, so that the update depends on the plan alone and starts
  // share trajectories as above, and kept only if it does not raise the cost, else run from the
  // previous covariances, which lowers it), and the starts are first brought into the model (the
  // M-step on their own covariances, W_k = Sigma_k, n_k = 1): the reduced mixture belongs to the
  // model. In one dimension a model is E or V by its volume letter.
  CovarianceModel model = CovarianceModel::VVV;
};

struct ReduceResult {
  Mixture mixture;                      // reduced mixture (may have fewer than K components)
  double objective;                     // final objective of the best start
  int n_iter;                           // MM updates made by the best start
  bool converged;                       // relative decrease fell below tol
  std::vector<double> objective_trace;  // objective before the first and after each update
  Eigen::MatrixXd assignment;           // N x K' transport plan pi of the best start
  int start_index;                      // which start won
  std::vector<double> start_objectives; // final objective of every start
  std::vector<int> start_n_iter;        // MM updates made by every start
  int n_starts_cut = 0;                 // starts cut short by joining an earlier start's trajectory
};

// C[n, k] = KL(N(mu_n, S_n) || N(m_k, V_k)) for every component n of `pooled` and k of `mixture`.
Eigen::MatrixXd kl_cost(const Mixture& pooled, const Mixture& mixture);

// Reduce `pooled` to at most n_components components from each start (each start must have
// between 1 and n_components components); the start with the smallest final objective wins
// (ties: the lowest index). Starts with identical parameters run once (a duplicate reports the
// objective of its first occurrence), and starts that join an earlier start's trajectory are cut
// short (ReduceOptions::share_trajectories); only the best start's transport plan is held beyond
// the running ones, so memory is O(N K) per thread (plus at most 16 N K doubles of recorded plans)
// whatever the number of starts.
// Throws std::invalid_argument on inconsistent input.
ReduceResult reduce(const Mixture& pooled, const std::vector<Mixture>& starts, int n_components,
                    const ReduceOptions& options = {});

// Default starts for reducing `mixtures` to K components: every mixture with exactly K
// components. If there is none, one start seeded from the pool (pool(mixtures, n_samples)): its
// heaviest component, then repeatedly the pooled component farthest (weighted KL cost) from those
// chosen, stopping early (fewer than K seeds) when every remaining component coincides with a
// chosen one.
std::vector<Mixture> default_starts(const std::vector<Mixture>& mixtures, int n_components,
                                    const std::vector<double>& n_samples = {});

// pool(mixtures, n_samples) reduced from default_starts(mixtures, K, n_samples): plain MR
// (trim = 0) or TKB. n_samples: the sites' sizes, one per mixture (empty: equal; see pool()).
ReduceResult reduce_mixtures(const std::vector<Mixture>& mixtures, int n_components,
                             const ReduceOptions& options = {}, const std::vector<double>& n_samples = {});

}  // namespace dfmr
