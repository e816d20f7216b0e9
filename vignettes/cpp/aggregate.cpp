// dfmr from a compiled pipeline, without Python.
//
// Reads m local estimates of a K-component mixture in d dimensions from a plain text file
// (first line: m K d; then, per machine and component: weight, d mean entries, d*d
// covariance entries, row-major) and aggregates them by DFMR in one call of the core,
// dfmr::aggregate: pairwise L2 distances, centre, distance filter and mixture reduction of the
// kept estimates, exactly as the Python package does (it calls the same function). Prints the
// centre, the kept machines, the filter and the aggregated mixture.
#include <dfmr/dfmr.hpp>

#include <cmath>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <vector>

namespace {

std::vector<dfmr::Mixture> read_estimates(std::istream& in, int& K) {
  std::size_t m = 0, d = 0;
  in >> m >> K >> d;
  if (!in || m == 0 || K < 1 || d == 0) throw std::runtime_error("bad header: expected m K d");
  std::vector<dfmr::Mixture> out;
  const auto k = static_cast<std::size_t>(K);
  for (std::size_t i = 0; i < m; ++i) {
    std::vector<double> w(k), mu(k * d), cov(k * d * d);
    for (std::size_t c = 0; c < k; ++c) {
      in >> w[c];
      for (std::size_t j = 0; j < d; ++j) in >> mu[c * d + j];
      for (std::size_t j = 0; j < d * d; ++j) in >> cov[c * d * d + j];
    }
    if (!in) throw std::runtime_error("truncated input");
    out.emplace_back(k, d, w.data(), mu.data(), cov.data());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: aggregate ESTIMATES.txt\n";
    return 2;
  }
  try {
    std::ifstream file(argv[1]);
    int K = 0;
    const std::vector<dfmr::Mixture> local = read_estimates(file, K);

    const dfmr::AggregateResult r = dfmr::aggregate(local, dfmr::Method::dfmr, K);

    const dfmr::FilterDecision& f = *r.filter;  // distances are scaled by 2^-exponent
    std::cout.precision(17);
    std::cout << "centre " << f.center << "\nkept";
    for (std::size_t i : r.retained) std::cout << ' ' << i;
    std::cout << "\nradius " << std::ldexp(f.radius, r.exponent) << " cutoff " << std::ldexp(f.cutoff, r.exponent)
              << "\nobjective " << r.objective << " after " << r.n_iter << " updates\n";
    for (std::size_t k = 0; k < r.mixture.n_components(); ++k) {
      std::cout << "weight " << r.mixture.weights()[static_cast<Eigen::Index>(k)] << " mean";
      for (std::size_t j = 0; j < r.mixture.dim(); ++j)
        std::cout << ' ' << r.mixture.means()(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(j));
      std::cout << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "aggregate: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
