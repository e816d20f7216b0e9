// dfmr from a compiled pipeline, without Python.
//
// Reads m local estimates of a K-component mixture in d dimensions from a plain text file
// (first line: m K d; then, per machine and component: weight, d mean entries, d*d
// covariance entries, row-major), computes the pairwise L2 distances, applies the DFMR
// filter (centre = smallest median distance; keep D[c, i] <= kappa * r with r the
// floor(m/2)-th smallest distance from the centre, kappa = m^0.1) and reduces the kept
// estimates by MR. Prints the centre, the kept machines and the aggregated mixture.
#include <dfmr/dfmr.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <vector>

namespace {

std::vector<dfmr::Mixture> read_estimates(std::istream& in, int& K) {
  std::size_t m = 0, d = 0;
  in >> m >> K >> d;
  std::vector<dfmr::Mixture> out;
  for (std::size_t i = 0; i < m; ++i) {
    std::vector<double> w(static_cast<std::size_t>(K)), mu(static_cast<std::size_t>(K) * d),
        cov(static_cast<std::size_t>(K) * d * d);
    for (int k = 0; k < K; ++k) {
      in >> w[static_cast<std::size_t>(k)];
      for (std::size_t j = 0; j < d; ++j) in >> mu[static_cast<std::size_t>(k) * d + j];
      for (std::size_t j = 0; j < d * d; ++j) in >> cov[static_cast<std::size_t>(k) * d * d + j];
    }
    if (!in) throw std::runtime_error("truncated input");
    out.emplace_back(static_cast<std::size_t>(K), d, w.data(), mu.data(), cov.data());
  }
  return out;
}

// numpy.quantile(row, 0.5): the median with linear interpolation.
double median(std::vector<double> row) {
  std::sort(row.begin(), row.end());
  const std::size_t n = row.size();
  return n % 2 ? row[n / 2] : 0.5 * (row[n / 2 - 1] + row[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: aggregate ESTIMATES.txt\n";
    return 2;
  }
  std::ifstream file(argv[1]);
  int K = 0;
  const std::vector<dfmr::Mixture> local = read_estimates(file, K);
  const std::size_t m = local.size();

  const Eigen::MatrixXd D = dfmr::pairwise_l2(local);
  std::size_t centre = 0;
  double best = INFINITY;
  for (std::size_t i = 0; i < m; ++i) {
    const Eigen::VectorXd r = D.row(static_cast<Eigen::Index>(i));
    const double med = median(std::vector<double>(r.data(), r.data() + r.size()));
    if (med < best) best = med, centre = i;
  }
  std::vector<double> row(m);
  for (std::size_t i = 0; i < m; ++i) row[i] = D(static_cast<Eigen::Index>(centre), static_cast<Eigen::Index>(i));
  std::vector<double> sorted = row;
  std::sort(sorted.begin(), sorted.end());
  const double cutoff = std::pow(static_cast<double>(m), 0.1) * sorted[m / 2];

  std::vector<dfmr::Mixture> kept;
  std::cout << "centre " << centre << "\nkept";
  for (std::size_t i = 0; i < m; ++i)
    if (row[i] <= cutoff) kept.push_back(local[i]), std::cout << ' ' << i;
  std::cout << "\n";

  const dfmr::ReduceResult r = dfmr::reduce_mixtures(kept, K);
  std::cout << "objective " << r.objective << " after " << r.n_iter << " updates\n";
  for (std::size_t k = 0; k < r.mixture.n_components(); ++k)
    std::cout << "weight " << r.mixture.weights()[static_cast<Eigen::Index>(k)] << " mean "
              << r.mixture.means().row(static_cast<Eigen::Index>(k)) << "\n";
  return 0;
}
