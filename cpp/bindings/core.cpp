// pybind11 glue: converts NumPy arrays to the core's types and back, nothing else.
// A list of mixtures crosses the boundary packed: weights (N,), means (N, d),
// covariances (N, d, d) and offsets (m + 1,), mixture i owning rows offsets[i]:offsets[i+1].
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "dfmr/dfmr.hpp"

namespace py = pybind11;

namespace {

using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using IndexArray = py::array_t<long long, py::array::c_style | py::array::forcecast>;

// Shapes of one packed set of components: returns (N, d).
std::pair<std::size_t, std::size_t> check_shapes(const Array& w, const Array& mu, const Array& cov) {
  if (w.ndim() != 1 || mu.ndim() != 2 || cov.ndim() != 3)
    throw std::invalid_argument("packed mixtures: expected weights (N,), means (N, d), covariances (N, d, d)");
  const auto N = static_cast<std::size_t>(w.shape(0));
  const auto d = static_cast<std::size_t>(mu.shape(1));
  if (static_cast<std::size_t>(mu.shape(0)) != N || static_cast<std::size_t>(cov.shape(0)) != N ||
      static_cast<std::size_t>(cov.shape(1)) != d || static_cast<std::size_t>(cov.shape(2)) != d)
    throw std::invalid_argument("packed mixtures: inconsistent shapes");
  return {N, d};
}

dfmr::Mixture unpack_one(const Array& w, const Array& mu, const Array& cov) {
  const auto [N, d] = check_shapes(w, mu, cov);
  return dfmr::Mixture(N, d, w.data(), mu.data(), cov.data());
}

std::vector<dfmr::Mixture> unpack(const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets) {
  const auto [N, d] = check_shapes(w, mu, cov);
  if (offsets.ndim() != 1 || offsets.shape(0) < 1) throw std::invalid_argument("packed mixtures: offsets must be (m+1,)");
  const long long* off = offsets.data();
  const auto m = static_cast<std::size_t>(offsets.shape(0)) - 1;
  std::vector<dfmr::Mixture> out;
  out.reserve(m);
  for (std::size_t i = 0; i < m; ++i) {
    const long long a = off[i], b = off[i + 1];
    if (a < 0 || b <= a || static_cast<std::size_t>(b) > N) throw std::invalid_argument("packed mixtures: bad offsets");
    const auto K = static_cast<std::size_t>(b - a);
    out.emplace_back(K, d, w.data() + a, mu.data() + a * static_cast<long long>(d),
                     cov.data() + a * static_cast<long long>(d * d));
  }
  return out;
}

py::tuple pack(const std::vector<dfmr::Mixture>& mixtures) {
  std::size_t N = 0;
  for (const auto& f : mixtures) N += f.n_components();
  const std::size_t d = mixtures.empty() ? 0 : mixtures.front().dim();
  const auto n = static_cast<py::ssize_t>(N), dd = static_cast<py::ssize_t>(d);
  Array w({n}), mu({n, dd}), cov({n, dd, dd});
  IndexArray offsets({static_cast<py::ssize_t>(mixtures.size() + 1)});
  double *pw = w.mutable_data(), *pm = mu.mutable_data(), *pc = cov.mutable_data();
  long long* po = offsets.mutable_data();
  po[0] = 0;
  for (std::size_t i = 0; i < mixtures.size(); ++i) {
    const auto& f = mixtures[i];
    const std::size_t K = f.n_components();
    std::copy(f.weights().data(), f.weights().data() + K, pw);
    std::copy(f.means().data(), f.means().data() + K * d, pm);
    std::copy(f.covariance_data(), f.covariance_data() + K * d * d, pc);
    pw += K, pm += K * d, pc += K * d * d;
    po[i + 1] = po[i] + static_cast<long long>(K);
  }
  return py::make_tuple(w, mu, cov, offsets);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "dfmr compiled core: L2 distances between Gaussian mixtures and KL mixture reduction";

  m.def(
      "pairwise_l2",
      [](const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets, int n_threads) {
        auto mixtures = unpack(w, mu, cov, offsets);
        py::gil_scoped_release release;
        return Eigen::MatrixXd(dfmr::pairwise_l2(mixtures, n_threads));
      },
      py::arg("weights"), py::arg("means"), py::arg("covariances"), py::arg("offsets"), py::arg("n_threads") = 0);

  m.def(
      "kl_cost",
      [](const Array& pw, const Array& pmu, const Array& pcov, const Array& w, const Array& mu, const Array& cov) {
        const auto pooled = unpack_one(pw, pmu, pcov);
        const auto mixture = unpack_one(w, mu, cov);
        py::gil_scoped_release release;
        return Eigen::MatrixXd(dfmr::kl_cost(pooled, mixture));
      });

  m.def(
      "default_starts",
      [](const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets, int n_components) {
        return pack(dfmr::default_starts(unpack(w, mu, cov, offsets), n_components));
      });

  m.def(
      "reduce",
      [](const Array& pw, const Array& pmu, const Array& pcov, const Array& sw, const Array& smu, const Array& scov,
         const IndexArray& soffsets, int n_components, int max_iter, double tol, double trim, int n_threads) {
        const auto pooled = unpack_one(pw, pmu, pcov);
        const auto starts = unpack(sw, smu, scov, soffsets);
        dfmr::ReduceOptions opt;
        opt.max_iter = max_iter;
        opt.tol = tol;
        opt.trim = trim;
        opt.n_threads = n_threads;
        py::gil_scoped_release release;
        dfmr::ReduceResult r = dfmr::reduce(pooled, starts, n_components, opt);
        py::gil_scoped_acquire acquire;
        const auto& g = r.mixture;
        py::dict out;
        out["weights"] = Eigen::VectorXd(g.weights());
        out["means"] = Eigen::MatrixXd(g.means());
        out["covariances"] = pack({g})[2];
        out["objective"] = r.objective;
        out["n_iter"] = r.n_iter;
        out["converged"] = r.converged;
        out["objective_trace"] = r.objective_trace;
        out["assignment"] = r.assignment;
        out["start_index"] = r.start_index;
        out["start_objectives"] = r.start_objectives;
        return out;
      },
      py::arg("pooled_weights"), py::arg("pooled_means"), py::arg("pooled_covariances"), py::arg("start_weights"),
      py::arg("start_means"), py::arg("start_covariances"), py::arg("start_offsets"), py::arg("n_components"),
      py::arg("max_iter") = 100, py::arg("tol") = 1e-5, py::arg("trim") = 0.0, py::arg("n_threads") = 0);

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
}
