// Embedding example: link dfmr::core, pool three local estimates of a two-component
// mixture whose labels are permuted differently on each machine, measure how far apart
// they are, and reduce the pool back to two components.
#include <dfmr/dfmr.hpp>

#include <cmath>
#include <iostream>
#include <vector>

int main() {
  const Eigen::Matrix2d I = Eigen::Matrix2d::Identity();
  auto machine = [&](double shift, bool swap) {
    Eigen::Vector2d w(0.3, 0.7);
    Eigen::MatrixXd mu(2, 2);
    mu << -2.0 + shift, 0.0, 3.0 - shift, 1.0;
    std::vector<Eigen::MatrixXd> cov{I * (1.0 + shift), I * (0.5 + shift)};
    if (swap) {
      std::swap(w[0], w[1]);
      mu.row(0).swap(mu.row(1));
      std::swap(cov[0], cov[1]);
    }
    return dfmr::Mixture(w, mu, cov);
  };
  const std::vector<dfmr::Mixture> local{machine(0.0, false), machine(0.05, true), machine(-0.05, false)};

  const Eigen::MatrixXd D = dfmr::pairwise_l2(local, 2);
  std::cout << "pairwise L2 distances:\n" << D << "\n";

  const dfmr::ReduceResult r = dfmr::reduce_mixtures(local, 2);
  std::cout << "reduced to " << r.mixture.n_components() << " components in " << r.n_iter
            << " MM updates, objective " << r.objective << (r.converged ? " (converged)\n" : "\n");
  for (std::size_t k = 0; k < r.mixture.n_components(); ++k)
    std::cout << "  w = " << r.mixture.weights()[static_cast<Eigen::Index>(k)] << "  mu = "
              << r.mixture.means().row(static_cast<Eigen::Index>(k)) << "\n";

  // Self-check so that ctest can run this program: the label switch must not matter.
  const double w0 = r.mixture.weights().minCoeff();
  const bool ok = r.mixture.n_components() == 2 && std::abs(w0 - 0.3) < 1e-12 && r.converged &&
                  D.isApprox(D.transpose()) && D.diagonal().isZero(0.0);
  return ok ? 0 : 1;
}
