// Instruction-count harness for the reduction's cost per covariance model (issue 21): reads local
// estimates from a text file, runs dfmr::reduce_mixtures once under each requested model (every
// estimate with K components is a start, MR's default; one thread) and prints its objective.
// Meant to run under `valgrind --tool=callgrind --toggle-collect='measured_reduction*'`, which
// counts the instructions of the measured call alone: a first, unmeasured reduction of the same
// pool under the same model runs before it, so that one-time costs (symbol binding, the dispatch
// of the multi-versioned kernels, first-touch allocations) are not counted. Run by
// tests/benchmarks/bench_covariance.py --callgrind, which writes the file and reads the counts.
//
// Usage: dfmr_reduce_instructions FILE MODEL [MODEL ...]
// FILE: whitespace-separated numbers: m K d, then per estimate K weights, K x d means (row by row)
// and K covariances (d x d, row by row); numbers as printed with 17 significant digits, so that
// the estimates are read back bit for bit.
#include <dfmr/dfmr.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::vector<dfmr::Mixture> read_estimates(const std::string& path, int& n_components) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  long m = 0, K = 0, d = 0;
  if (!(in >> m >> K >> d) || m < 1 || K < 1 || d < 1) throw std::runtime_error(path + ": expected m K d >= 1");
  auto next = [&] {
    double x;
    if (!(in >> x)) throw std::runtime_error(path + ": too few numbers");
    return x;
  };
  std::vector<dfmr::Mixture> out;
  const auto k = static_cast<std::size_t>(K), dim = static_cast<std::size_t>(d);
  for (long i = 0; i < m; ++i) {
    std::vector<double> w(k), mu(k * dim), cov(k * dim * dim);
    for (double& x : w) x = next();
    for (double& x : mu) x = next();
    for (double& x : cov) x = next();
    out.emplace_back(k, dim, w.data(), mu.data(), cov.data());
  }
  double extra;
  if (in >> extra) throw std::runtime_error(path + ": more numbers than m K d announce");
  n_components = static_cast<int>(K);
  return out;
}

// The call callgrind counts (--toggle-collect): kept out of line so that it has a symbol.
[[gnu::noinline]] dfmr::ReduceResult measured_reduction(const std::vector<dfmr::Mixture>& local, int K,
                                                        const dfmr::ReduceOptions& opt) {
  return dfmr::reduce_mixtures(local, K, opt);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " FILE MODEL [MODEL ...]\n";
    return 2;
  }
  try {
    int K = 0;
    const std::vector<dfmr::Mixture> local = read_estimates(argv[1], K);
    for (int a = 2; a < argc; ++a) {
      dfmr::ReduceOptions opt;
      opt.model = dfmr::parse_covariance_model(argv[a], local[0].dim());
      opt.n_threads = 1;
      const double warm = dfmr::reduce_mixtures(local, K, opt).objective;
      const dfmr::ReduceResult r = measured_reduction(local, K, opt);
      if (r.objective != warm) throw std::logic_error("the measured reduction differs from the first");
      std::printf("%s objective %.17g n_iter %d starts_cut %d\n", argv[a], r.objective, r.n_iter, r.n_starts_cut);
    }
  } catch (const std::exception& e) {
    std::cerr << argv[0] << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}
