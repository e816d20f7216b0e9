// The whole method in the core: centre, filter, DFMR/MR/COAT/TKB, starts, the sampled centre.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "dfmr/aggregate.hpp"
#include "test_support.hpp"

namespace {

using dfmr_test::random_spd;

// m local estimates of a well separated K-component population in d dimensions, the first
// n_bad of them with every mean moved by 60 (a Byzantine mean attack).
std::vector<dfmr::Mixture> estimates(unsigned seed, int m, int n_bad, int K = 3, int d = 2) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<Eigen::MatrixXd> S;
  Eigen::MatrixXd centres(K, d);
  for (int k = 0; k < K; ++k) {
    S.push_back(random_spd(rng, d, 0.5));
    for (int i = 0; i < d; ++i) centres(k, i) = z(rng) + 10.0 * k;
  }
  std::vector<dfmr::Mixture> out;
  for (int t = 0; t < m; ++t) {
    Eigen::VectorXd w = Eigen::VectorXd::Constant(K, 1.0 / K);
    Eigen::MatrixXd mu = centres;
    std::vector<Eigen::MatrixXd> cov;
    for (int k = 0; k < K; ++k) {
      for (int i = 0; i < d; ++i) mu(k, i) += 0.2 * z(rng) + (t < n_bad ? 60.0 : 0.0);
      cov.push_back(S[static_cast<std::size_t>(k)] + 0.05 * random_spd(rng, d, 0.0));
    }
    out.emplace_back(w, mu, cov);
  }
  return out;
}

// numpy.quantile(x, 0.5) semantics written out: sort, then lerp at t = 0.5.
double numpy_median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const std::size_t n = x.size();
  if (n % 2) return x[n / 2];
  const double a = x[n / 2 - 1], b = x[n / 2];
  return b - (b - a) * 0.5;
}

}  // namespace

TEST(Median, MatchesSortedDefinition) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::size_t n = 1; n < 12; ++n) {
    std::vector<double> x(n);
    for (double& v : x) v = u(rng);
    EXPECT_EQ(dfmr::median(x), numpy_median(x)) << n;
  }
  EXPECT_THROW(dfmr::median({}), std::invalid_argument);
}

TEST(CenterIndex, SmallestRowMedianWithTiesToLowestIndex) {
  Eigen::MatrixXd D(4, 4);
  D << 0, 1, 5, 5,  //
      1, 0, 1, 5,   //
      5, 1, 0, 1,   //
      5, 5, 1, 0;
  // Row medians: 3, 1, 1, 3 -> rows 1 and 2 tie, the lower wins.
  EXPECT_EQ(dfmr::center_index(D), 1u);
  EXPECT_THROW(dfmr::center_index(Eigen::MatrixXd(2, 3)), std::invalid_argument);
  D(0, 1) = NAN;
  EXPECT_THROW(dfmr::center_index(D), std::invalid_argument);
}

TEST(DistanceFilter, RadiusIsMiddleOrderStatisticOfCentreRow) {
  Eigen::VectorXd row(5);
  row << 0.5, 0.0, 2.0, 1.0, 9.0;
  const dfmr::FilterDecision f = dfmr::filter_row(1, row, 1.5);
  EXPECT_EQ(f.radius, 1.0);  // sorted: 0, 0.5, 1, 2, 9; entry floor(5/2)
  EXPECT_EQ(f.cutoff, 1.5);
  EXPECT_EQ(f.retained, (std::vector<std::size_t>{0, 1, 3}));
  EXPECT_DOUBLE_EQ(dfmr::filter_row(1, row, 0.0).threshold, std::pow(5.0, 0.1));
  EXPECT_THROW(dfmr::filter_row(1, row, 0.9), std::invalid_argument);
  EXPECT_THROW(dfmr::filter_row(7, row, 1.5), std::invalid_argument);
}

TEST(Aggregate, DfmrDropsAttackedMachinesAndEqualsMrOnTheRest) {
  const auto local = estimates(1, 12, 3);
  const dfmr::AggregateResult r = dfmr::aggregate(local, dfmr::Method::dfmr, 3);
  ASSERT_TRUE(r.filter);
  EXPECT_GE(r.retained.size(), 7u);  // at least the floor(m/2) + 1 machines of the radius ball
  EXPECT_EQ(r.retained.front(), 3u);  // none of the attacked ones
  // The filter ran on the full matrix: same decision as the free functions on it.
  const dfmr::ScaledDistances S = dfmr::pairwise_l2_scaled(local);
  EXPECT_EQ(r.filter->center, dfmr::center_index(S.scaled));
  EXPECT_EQ(r.distances, S.scaled);
  std::vector<dfmr::Mixture> kept;
  for (std::size_t i : r.retained) kept.push_back(local[i]);
  const dfmr::ReduceResult mr = dfmr::reduce_mixtures(kept, 3);
  EXPECT_EQ(r.objective, mr.objective);
  EXPECT_EQ(r.mixture.means(), mr.mixture.means());
  EXPECT_EQ(r.start_machines, r.retained);
}

TEST(Aggregate, CoatReturnsCentreEstimateAndTkbTrims) {
  const auto local = estimates(2, 9, 2);
  const dfmr::AggregateResult c = dfmr::aggregate(local, dfmr::Method::coat, 0);
  ASSERT_TRUE(c.filter);
  EXPECT_EQ(c.retained, std::vector<std::size_t>{c.filter->center});
  EXPECT_EQ(c.mixture.means(), local[c.filter->center].means());
  EXPECT_TRUE(std::isnan(c.objective));
  dfmr::AggregateOptions opt;
  opt.alpha = 0.3;
  const dfmr::AggregateResult t = dfmr::aggregate(local, dfmr::Method::tkb, 3, opt);
  dfmr::ReduceOptions ropt;
  ropt.trim = 0.3;
  EXPECT_EQ(t.objective, dfmr::reduce_mixtures(local, 3, ropt).objective);
  EXPECT_FALSE(t.filter);
}

TEST(Aggregate, NStartsTakesMostCentralMachines) {
  const auto local = estimates(3, 10, 2);
  dfmr::AggregateOptions opt;
  opt.n_starts = 3;
  const dfmr::AggregateResult r = dfmr::aggregate(local, dfmr::Method::dfmr, 3, opt);
  ASSERT_EQ(r.start_machines.size(), 3u);
  const Eigen::VectorXd& row = r.filter->distance_to_center;
  double worst_chosen = 0.0, best_other = INFINITY;
  for (std::size_t i : r.retained) {
    const bool chosen = std::count(r.start_machines.begin(), r.start_machines.end(), i) > 0;
    const double v = row[static_cast<Eigen::Index>(i)];
    if (chosen) worst_chosen = std::max(worst_chosen, v);
    else best_other = std::min(best_other, v);
  }
  EXPECT_LE(worst_chosen, best_other);
  EXPECT_TRUE(std::is_sorted(r.start_machines.begin(), r.start_machines.end()));
  EXPECT_EQ(r.reduction->start_objectives.size(), 3u);
  opt.n_starts = 4;
  const dfmr::AggregateResult m = dfmr::aggregate(local, dfmr::Method::mr, 3, opt);
  EXPECT_EQ(m.start_machines, (std::vector<std::size_t>{0, 2, 5, 7}));
}

TEST(Aggregate, SampledCentreWithEveryMachineIsExact) {
  const auto local = estimates(4, 11, 3);
  dfmr::AggregateOptions opt;
  opt.center = dfmr::CenterRule::sampled;
  opt.n_center_sample = 11;
  const dfmr::AggregateResult s = dfmr::aggregate(local, dfmr::Method::dfmr, 3, opt);
  const dfmr::AggregateResult e = dfmr::aggregate(local, dfmr::Method::dfmr, 3);
  EXPECT_EQ(s.filter->center, e.filter->center);
  EXPECT_EQ(s.filter->distance_to_center, e.filter->distance_to_center);
  EXPECT_EQ(s.retained, e.retained);
  EXPECT_EQ(s.center_sample.size(), 11u);
  EXPECT_EQ(s.distances.size(), 0);
}

TEST(Aggregate, SampledCentreIsReproducibleAndRobust) {
  const auto local = estimates(5, 60, 15);
  dfmr::AggregateOptions opt;
  opt.center = dfmr::CenterRule::sampled;
  opt.n_center_sample = 20;
  opt.seed = 7;
  const dfmr::AggregateResult a = dfmr::aggregate(local, dfmr::Method::dfmr, 3, opt);
  const dfmr::AggregateResult b = dfmr::aggregate(local, dfmr::Method::dfmr, 3, opt);
  EXPECT_EQ(a.center_sample, b.center_sample);
  EXPECT_EQ(a.retained, b.retained);
  EXPECT_GE(a.filter->center, 15u);
  EXPECT_EQ(a.retained.front(), 15u);
  EXPECT_EQ(a.retained, dfmr::aggregate(local, dfmr::Method::dfmr, 3).retained);
}

TEST(CrossDistances, EqualPairwiseEntriesBitForBit) {
  const auto local = estimates(6, 8, 2);
  const dfmr::ScaledDistances all = dfmr::pairwise_l2_scaled(local);
  const std::vector<std::size_t> rows{5, 0, 7}, cols{1, 5, 6, 2};
  const dfmr::ScaledDistances part = dfmr::cross_l2_scaled(local, rows, cols);
  EXPECT_EQ(part.exponent, all.exponent);
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t c = 0; c < cols.size(); ++c)
      EXPECT_EQ(part.scaled(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)),
                all.scaled(static_cast<Eigen::Index>(rows[r]), static_cast<Eigen::Index>(cols[c])));
  EXPECT_THROW(dfmr::cross_l2_scaled(local, {8}, {0}), std::invalid_argument);
}

// Estimates large enough (d = 16) that the lane data of 400 machines spans several cache-sized
// chunks (about 143 machines each): requests over every machine reuse the pool of all m, columns
// meet the rows chunk by chunk; entries must still be the pairwise matrix's, bit for bit.
TEST(CrossDistances, LargeRequestsEqualPairwiseEntriesBitForBit) {
  const auto local = estimates(11, 400, 40, 3, 16);
  const dfmr::ScaledDistances all = dfmr::pairwise_l2_scaled(local, 2);
  std::vector<std::size_t> every(local.size());
  std::iota(every.begin(), every.end(), std::size_t{0});
  const std::vector<std::size_t> some{399, 3, 143, 142, 3, 287, 0, 200};
  for (const auto& [rows, cols] : {std::pair{every, some}, std::pair{some, every}, std::pair{std::vector<std::size_t>{144}, every}}) {
    const dfmr::ScaledDistances part = dfmr::cross_l2_scaled(local, rows, cols, 2);
    ASSERT_EQ(part.exponent, all.exponent);
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (std::size_t c = 0; c < cols.size(); ++c)
        ASSERT_EQ(part.scaled(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)),
                  all.scaled(static_cast<Eigen::Index>(rows[r]), static_cast<Eigen::Index>(cols[c])))
            << rows[r] << ", " << cols[c];
  }
}

// The full matrix is computed in tiles (rows against cache-sized chunks of columns); every entry
// must equal the distance of its two mixtures computed alone, bit for bit (the scaling by a power
// of two is exact here), across the chunks' boundaries too.
TEST(PairwiseDistances, TilesEqualPairByPairDistancesBitForBit) {
  const auto local = estimates(12, 400, 40, 3, 16);
  const Eigen::MatrixXd D = dfmr::pairwise_l2(local, 2);
  for (std::size_t i : {std::size_t{0}, std::size_t{141}, std::size_t{142}, std::size_t{143}, std::size_t{286},
                        std::size_t{399}})
    for (std::size_t j : {std::size_t{0}, std::size_t{1}, std::size_t{142}, std::size_t{143}, std::size_t{144},
                          std::size_t{287}, std::size_t{398}, std::size_t{399}})
      ASSERT_EQ(D(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)), dfmr::l2_distance(local[i], local[j]))
          << i << ", " << j;
}

TEST(Reduce, DuplicateStartsShareTheirFirstOccurrenceResult) {
  const auto local = estimates(7, 6, 0);
  const dfmr::Mixture pooled = dfmr::pool(local);
  const std::vector<dfmr::Mixture> distinct{local[3], local[1]};
  const std::vector<dfmr::Mixture> repeated{local[3], local[1], local[3], local[1], local[3]};
  const dfmr::ReduceResult a = dfmr::reduce(pooled, distinct, 3);
  const dfmr::ReduceResult b = dfmr::reduce(pooled, repeated, 3);
  EXPECT_EQ(a.objective, b.objective);
  EXPECT_EQ(a.start_index, b.start_index);
  ASSERT_EQ(b.start_objectives.size(), 5u);
  EXPECT_EQ(b.start_objectives[2], a.start_objectives[0]);
  EXPECT_EQ(b.start_objectives[3], a.start_objectives[1]);
  EXPECT_EQ(a.assignment, b.assignment);
}

TEST(Aggregate, InvalidInputThrows) {
  const auto local = estimates(8, 5, 0);
  EXPECT_THROW(dfmr::aggregate({}, dfmr::Method::mr, 3), std::invalid_argument);
  EXPECT_THROW(dfmr::aggregate(local, dfmr::Method::dfmr, 0), std::invalid_argument);
  dfmr::AggregateOptions opt;
  opt.threshold = 0.5;
  EXPECT_THROW(dfmr::aggregate(local, dfmr::Method::dfmr, 3, opt), std::invalid_argument);
  opt = {};
  opt.n_starts = -1;
  EXPECT_THROW(dfmr::aggregate(local, dfmr::Method::mr, 3, opt), std::invalid_argument);
  opt = {};
  opt.alpha = 1.0;
  EXPECT_THROW(dfmr::aggregate(local, dfmr::Method::tkb, 3, opt), std::invalid_argument);
  EXPECT_THROW(dfmr::parse_method("median"), std::invalid_argument);
  EXPECT_THROW(dfmr::parse_center_rule("fast"), std::invalid_argument);
}

// ------------------------------------------------------------------------ sample sizes

// The pool of sized sites, entry by entry: w_ik n_i / sum_j n_j, components in machine order.
TEST(Pool, SizesWeightEachSiteByItsShareOfTheData) {
  const auto local = estimates(11, 4, 0);
  const std::vector<double> n{200.0, 50.0, 1000.0, 750.0};
  const dfmr::Mixture pooled = dfmr::pool(local, n);
  ASSERT_EQ(pooled.n_components(), 12u);
  for (std::size_t i = 0, t = 0; i < 4; ++i)
    for (std::size_t k = 0; k < 3; ++k, ++t) {
      EXPECT_NEAR(pooled.weights()[static_cast<Eigen::Index>(t)], local[i].weights()[static_cast<Eigen::Index>(k)] * n[i] / 2000.0, 1e-15);
      EXPECT_EQ(pooled.means().row(static_cast<Eigen::Index>(t)), local[i].means().row(static_cast<Eigen::Index>(k)));
    }
  // Equal sizes are no sizes, bit for bit.
  const dfmr::Mixture equal = dfmr::pool(local, {7.0, 7.0, 7.0, 7.0}), plain = dfmr::pool(local);
  EXPECT_EQ(equal.weights(), plain.weights());
  EXPECT_THROW(dfmr::pool(local, {1.0, 2.0, 3.0}), std::invalid_argument);
  EXPECT_THROW(dfmr::pool(local, {1.0, 2.0, 0.5, 4.0}), std::invalid_argument);
  EXPECT_THROW(dfmr::pool(local, {1.0, 2.0, NAN, 4.0}), std::invalid_argument);
  EXPECT_THROW(dfmr::pool(local, {1.0, 2.0, INFINITY, 4.0}), std::invalid_argument);
}

// A site of size 2n weighs as two identical sites of size n: MR over {a (2n), b, c (n)} is MR
// over {a, a, b, c} with equal sizes (the same pool up to the order of the sums).
TEST(Aggregate, SiteOfDoubleSizeWeighsAsTwoCopies) {
  const auto local = estimates(12, 3, 0);
  dfmr::AggregateOptions opt;
  opt.n_samples = {2.0, 1.0, 1.0};
  const dfmr::AggregateResult sized = dfmr::aggregate(local, dfmr::Method::mr, 3, opt);
  const dfmr::AggregateResult copies = dfmr::aggregate({local[0], local[0], local[1], local[2]}, dfmr::Method::mr, 3);
  EXPECT_NEAR(sized.objective, copies.objective, 1e-12 * std::abs(copies.objective));
  ASSERT_EQ(sized.mixture.n_components(), copies.mixture.n_components());
  EXPECT_TRUE(sized.mixture.weights().isApprox(copies.mixture.weights(), 1e-12));
  EXPECT_TRUE(sized.mixture.means().isApprox(copies.mixture.means(), 1e-12));
  for (std::size_t k = 0; k < 3; ++k) EXPECT_TRUE(sized.mixture.covariance(k).isApprox(copies.mixture.covariance(k), 1e-12));
}

// DFMR pools only the retained machines, renormalising their sizes; the attacked machines' sizes
// (huge here) do not enter. Equal sizes give the unweighted result bit for bit.
TEST(Aggregate, SizesOfRetainedMachinesOnlyAndEqualSizesAreNoSizes) {
  const auto local = estimates(13, 9, 2);
  dfmr::AggregateOptions opt;
  opt.n_samples = {1e9, 1e9, 100, 300, 200, 400, 100, 500, 300};
  const dfmr::AggregateResult sized = dfmr::aggregate(local, dfmr::Method::dfmr, 3, opt);
  ASSERT_EQ(sized.retained, (std::vector<std::size_t>{2, 3, 4, 5, 6, 7, 8}));
  std::vector<dfmr::Mixture> kept(local.begin() + 2, local.end());
  dfmr::ReduceOptions ropt;
  const dfmr::ReduceResult direct = dfmr::reduce_mixtures(kept, 3, ropt, {100, 300, 200, 400, 100, 500, 300});
  EXPECT_EQ(sized.objective, direct.objective);
  EXPECT_EQ(sized.mixture.means(), direct.mixture.means());

  opt.n_samples.assign(9, 250.0);
  const dfmr::AggregateResult equal = dfmr::aggregate(local, dfmr::Method::dfmr, 3, opt);
  const dfmr::AggregateResult plain = dfmr::aggregate(local, dfmr::Method::dfmr, 3);
  EXPECT_EQ(equal.objective, plain.objective);
  EXPECT_EQ(equal.mixture.weights(), plain.mixture.weights());
  EXPECT_EQ(equal.mixture.means(), plain.mixture.means());
  opt.n_samples.assign(8, 250.0);
  EXPECT_THROW(dfmr::aggregate(local, dfmr::Method::mr, 3, opt), std::invalid_argument);
}
