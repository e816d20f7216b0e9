// L2 distance between Gaussian mixture densities.
#pragma once

#include <Eigen/Core>

#include <vector>

#include "dfmr/mixture.hpp"

namespace dfmr {

// ||f - g||_2 for two mixtures of the same dimension:
//   ||f-g||^2 = sum_ab w_a w_b N(mu_a; mu_b, S_a+S_b) + sum_ab v_a v_b N(nu_a; nu_b, P_a+P_b)
//             - 2 sum_ab w_a v_b N(mu_a; nu_b, S_a+P_b),
// each sum accumulated in log space, the square root clamped at 0.
double l2_distance(const Mixture& f, const Mixture& g);

// m x m matrix of L2 distances between all pairs of mixtures (any number of components
// each, common dimension). Every Gaussian overlap N(mu_a; mu_b, S_a+S_b) between pooled
// components is computed once (blocks of the pooled Gram matrix, upper triangle only),
// spread over n_threads threads (0: all hardware threads). The diagonal is exactly 0, and so
// is the distance between two mixtures with identical parameters. Distances beyond the
// double range are +inf and below it 0: see pairwise_l2_scaled.
Eigen::MatrixXd pairwise_l2(const std::vector<Mixture>& mixtures, int n_threads = 0);

// The same distances as D = scaled * 2^exponent, the exponent being the power of two nearest
// the median norm ||f_i||_2. Very flat (high-dimensional, wide) densities have tiny norms and
// distances that underflow to 0 in absolute terms, which would make every machine look the
// same; scaled, they keep their relative sizes. Entries beyond the double range saturate at
// the largest double. Rules that compare distances with each other (the DFMR centre and
// filter) give the same answer on `scaled` as on D, and exactly the same when D is representable.
struct ScaledDistances {
  Eigen::MatrixXd scaled;
  int exponent;
};
ScaledDistances pairwise_l2_scaled(const std::vector<Mixture>& mixtures, int n_threads = 0);

// Entries (rows[r], cols[c]) of pairwise_l2_scaled(mixtures), bit for bit, with the same
// exponent, computing only those |rows| x |cols| distances (plus the m norms the exponent needs).
ScaledDistances cross_l2_scaled(const std::vector<Mixture>& mixtures, const std::vector<std::size_t>& rows,
                                const std::vector<std::size_t>& cols, int n_threads = 0);

}  // namespace dfmr
