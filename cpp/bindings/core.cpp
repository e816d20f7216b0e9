// pybind11 glue: converts NumPy arrays to the core's types and back, nothing else.
// A list of mixtures crosses the boundary packed: weights (N,), means (N, d),
// covariances (N, d, d) and offsets (m + 1,), mixture i owning rows offsets[i]:offsets[i+1].
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dfmr/dfmr.hpp"

namespace py = pybind11;

namespace {

using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;
using IndexArray = py::array_t<long long, py::array::c_style | py::array::forcecast>;

// Raw view of packed components, taken while holding the GIL; the mixtures (and their
// Cholesky factorisations) are built from it after the GIL is released.
struct Packed {
  const double *w, *mu, *cov;
  std::size_t N, d;
  std::vector<std::pair<std::size_t, std::size_t>> ranges;  // [begin, end) per mixture

  std::vector<dfmr::Mixture> build() const {
    std::vector<dfmr::Mixture> out;
    out.reserve(ranges.size());
    for (const auto& [a, b] : ranges) out.emplace_back(b - a, d, w + a, mu + a * d, cov + a * d * d);
    return out;
  }
  dfmr::Mixture build_one() const { return std::move(build().front()); }
};

Packed view(const Array& w, const Array& mu, const Array& cov) {
  if (w.ndim() != 1 || mu.ndim() != 2 || cov.ndim() != 3)
    throw std::invalid_argument("packed mixtures: expected weights (N,), means (N, d), covariances (N, d, d)");
  const auto N = static_cast<std::size_t>(w.shape(0));
  const auto d = static_cast<std::size_t>(mu.shape(1));
  if (static_cast<std::size_t>(mu.shape(0)) != N || static_cast<std::size_t>(cov.shape(0)) != N ||
      static_cast<std::size_t>(cov.shape(1)) != d || static_cast<std::size_t>(cov.shape(2)) != d)
    throw std::invalid_argument("packed mixtures: inconsistent shapes");
  return Packed{w.data(), mu.data(), cov.data(), N, d, {{0, N}}};
}

Packed view(const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets) {
  Packed p = view(w, mu, cov);
  if (offsets.ndim() != 1 || offsets.shape(0) < 2) throw std::invalid_argument("packed mixtures: offsets must be (m+1,), m >= 1");
  const long long* off = offsets.data();
  const auto m = static_cast<std::size_t>(offsets.shape(0)) - 1;
  if (off[0] != 0 || static_cast<std::size_t>(off[m]) != p.N)
    throw std::invalid_argument("packed mixtures: offsets must start at 0 and end at N");
  p.ranges.clear();
  for (std::size_t i = 0; i < m; ++i) {
    if (off[i + 1] <= off[i]) throw std::invalid_argument("packed mixtures: offsets must increase");
    p.ranges.emplace_back(static_cast<std::size_t>(off[i]), static_cast<std::size_t>(off[i + 1]));
  }
  return p;
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

py::dict result_dict(const dfmr::ReduceResult& r) {
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
  out["start_n_iter"] = r.start_n_iter;
  out["n_starts_cut"] = r.n_starts_cut;
  return out;
}

py::dict filter_dict(const dfmr::FilterDecision& f) {
  py::dict out;
  out["center"] = f.center;
  out["distance_to_center"] = f.distance_to_center;
  out["radius"] = f.radius;
  out["threshold"] = f.threshold;
  out["cutoff"] = f.cutoff;
  out["retained"] = f.retained;
  return out;
}

py::dict aggregate_dict(const dfmr::AggregateResult& r) {
  py::dict out;
  out["method"] = dfmr::method_name(r.method);
  out["weights"] = Eigen::VectorXd(r.mixture.weights());
  out["means"] = Eigen::MatrixXd(r.mixture.means());
  out["covariances"] = pack({r.mixture})[2];
  out["n_machines"] = r.n_machines;
  out["retained"] = r.retained;
  out["filter"] = r.filter ? py::object(filter_dict(*r.filter)) : py::none();
  out["distances"] = r.distances.size() ? py::object(py::cast(r.distances)) : py::none();
  out["exponent"] = r.exponent;
  out["center_sample"] = r.center_sample;
  out["reduction"] = r.reduction ? py::object(result_dict(*r.reduction)) : py::none();
  out["start_machines"] = r.start_machines;
  out["objective"] = r.objective;
  out["n_iter"] = r.n_iter;
  out["converged"] = r.converged;
  return out;
}

dfmr::ReduceOptions options(int max_iter, double tol, double trim, int n_threads, bool share_trajectories,
                            const std::string& covariance_type, std::size_t dim) {
  dfmr::ReduceOptions opt;
  opt.model = dfmr::parse_covariance_model(covariance_type, dim);
  opt.share_trajectories = share_trajectories;
  opt.max_iter = max_iter;
  opt.tol = tol;
  opt.trim = trim;
  opt.n_threads = n_threads;
  return opt;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "dfmr compiled core: L2 distances between Gaussian mixtures and KL mixture reduction";

  m.def(
      "pairwise_l2_scaled",
      [](const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets, int n_threads) {
        const Packed p = view(w, mu, cov, offsets);
        dfmr::ScaledDistances s;
        {
          py::gil_scoped_release release;
          s = dfmr::pairwise_l2_scaled(p.build(), n_threads);
        }
        return py::make_tuple(s.scaled, s.exponent);
      },
      py::arg("weights"), py::arg("means"), py::arg("covariances"), py::arg("offsets"), py::arg("n_threads") = 0);

  m.def("kl_cost", [](const Array& pw, const Array& pmu, const Array& pcov, const Array& w, const Array& mu,
                      const Array& cov) {
    const Packed pooled = view(pw, pmu, pcov), mixture = view(w, mu, cov);
    py::gil_scoped_release release;
    return Eigen::MatrixXd(dfmr::kl_cost(pooled.build_one(), mixture.build_one()));
  });

  m.def(
      "default_starts",
      [](const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets, int n_components,
         const std::vector<double>& n_samples) {
        const Packed p = view(w, mu, cov, offsets);
        std::vector<dfmr::Mixture> starts;
        {
          py::gil_scoped_release release;
          starts = dfmr::default_starts(p.build(), n_components, n_samples);
        }
        return pack(starts);
      },
      py::arg("weights"), py::arg("means"), py::arg("covariances"), py::arg("offsets"), py::arg("n_components"),
      py::arg("n_samples") = std::vector<double>{});

  m.def(
      "reduce",
      [](const Array& pw, const Array& pmu, const Array& pcov, const Array& sw, const Array& smu, const Array& scov,
         const IndexArray& soffsets, int n_components, int max_iter, double tol, double trim, int n_threads,
         bool share_trajectories, const std::string& covariance_type) {
        const Packed pooled = view(pw, pmu, pcov), starts = view(sw, smu, scov, soffsets);
        const dfmr::ReduceOptions opt =
            options(max_iter, tol, trim, n_threads, share_trajectories, covariance_type, pooled.d);
        std::optional<dfmr::ReduceResult> r;
        {
          py::gil_scoped_release release;
          r = dfmr::reduce(pooled.build_one(), starts.build(), n_components, opt);
        }
        return result_dict(*r);
      },
      py::arg("pooled_weights"), py::arg("pooled_means"), py::arg("pooled_covariances"), py::arg("start_weights"),
      py::arg("start_means"), py::arg("start_covariances"), py::arg("start_offsets"), py::arg("n_components"),
      py::arg("max_iter") = 100, py::arg("tol") = 1e-5, py::arg("trim") = 0.0, py::arg("n_threads") = 0,
      py::arg("share_trajectories") = true, py::arg("covariance_type") = "full");

  m.def(
      "reduce_mixtures",
      [](const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets, int n_components, int max_iter,
         double tol, double trim, int n_threads, bool share_trajectories, const std::vector<double>& n_samples,
         const std::string& covariance_type) {
        const Packed p = view(w, mu, cov, offsets);
        const dfmr::ReduceOptions opt = options(max_iter, tol, trim, n_threads, share_trajectories, covariance_type, p.d);
        std::optional<dfmr::ReduceResult> r;
        {
          py::gil_scoped_release release;
          r = dfmr::reduce_mixtures(p.build(), n_components, opt, n_samples);
        }
        return result_dict(*r);
      },
      py::arg("weights"), py::arg("means"), py::arg("covariances"), py::arg("offsets"), py::arg("n_components"),
      py::arg("max_iter") = 100, py::arg("tol") = 1e-5, py::arg("trim") = 0.0, py::arg("n_threads") = 0,
      py::arg("share_trajectories") = true, py::arg("n_samples") = std::vector<double>{},
      py::arg("covariance_type") = "full");

  m.def(
      "pool",
      [](const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets,
         const std::vector<double>& n_samples) {
        const Packed p = view(w, mu, cov, offsets);
        std::optional<dfmr::Mixture> pooled;
        {
          py::gil_scoped_release release;
          pooled = dfmr::pool(p.build(), n_samples);
        }
        return pack({*pooled});
      },
      py::arg("weights"), py::arg("means"), py::arg("covariances"), py::arg("offsets"),
      py::arg("n_samples") = std::vector<double>{});

  // Constrained M-steps of B independent mixtures: scatter (B, K, d, d), counts (B, K), start
  // (B, K, d, d) or None; returns (B, K, d, d).
  m.def(
      "m_step",
      [](const std::string& model, const Array& scatter, const Array& counts, const std::optional<Array>& start) {
        if (scatter.ndim() != 4 || counts.ndim() != 2 || scatter.shape(2) != scatter.shape(3) ||
            counts.shape(0) != scatter.shape(0) || counts.shape(1) != scatter.shape(1))
          throw std::invalid_argument("m_step: expected scatter (B, K, d, d) and counts (B, K)");
        const auto B = static_cast<std::size_t>(scatter.shape(0)), K = static_cast<std::size_t>(scatter.shape(1));
        const auto d = static_cast<Eigen::Index>(scatter.shape(2));
        if (start && (start->ndim() != 4 || start->shape(0) != scatter.shape(0) || start->shape(1) != scatter.shape(1) ||
                      start->shape(2) != d || start->shape(3) != d))
          throw std::invalid_argument("m_step: start must have the shape of scatter");
        const dfmr::CovarianceModel how = dfmr::parse_covariance_model(model, static_cast<std::size_t>(d));
        Array out({scatter.shape(0), scatter.shape(1), scatter.shape(2), scatter.shape(3)});
        const double *W = scatter.data(), *n = counts.data(), *S = start ? start->data() : nullptr;
        double* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          const std::size_t dd = static_cast<std::size_t>(d * d);
          using RowMap = Eigen::Map<const dfmr::RowMatrix>;
          for (std::size_t b = 0; b < B; ++b) {
            std::vector<Eigen::MatrixXd> w, s;
            for (std::size_t k = 0; k < K; ++k) {
              w.emplace_back(RowMap(W + (b * K + k) * dd, d, d));
              if (S) s.emplace_back(RowMap(S + (b * K + k) * dd, d, d));
            }
            const Eigen::VectorXd c = Eigen::Map<const Eigen::VectorXd>(n + b * K, static_cast<Eigen::Index>(K));
            const std::vector<Eigen::MatrixXd> r = dfmr::constrained_m_step(how, w, c, s);
            for (std::size_t k = 0; k < K; ++k)
              Eigen::Map<dfmr::RowMatrix>(o + (b * K + k) * dd, d, d) = r[k];
          }
        }
        return out;
      },
      py::arg("model"), py::arg("scatter"), py::arg("counts"), py::arg("start") = py::none());

  m.def("center_index", [](const Eigen::MatrixXd& D) { return dfmr::center_index(D); }, py::arg("D"));

  m.def(
      "distance_filter",
      [](const Eigen::MatrixXd& D, double threshold) { return filter_dict(dfmr::distance_filter(D, threshold)); },
      py::arg("D"), py::arg("threshold") = 0.0);

  m.def(
      "filter_row",
      [](std::size_t center, const Eigen::VectorXd& row, double threshold) {
        return filter_dict(dfmr::filter_row(center, row, threshold));
      },
      py::arg("center"), py::arg("row"), py::arg("threshold") = 0.0);

  m.def(
      "aggregate",
      [](const Array& w, const Array& mu, const Array& cov, const IndexArray& offsets, const std::string& method,
         int n_components, double threshold, double alpha, int max_iter, double tol, int n_starts,
         const std::string& center, int n_center_sample, std::uint64_t seed, int n_threads,
         const std::vector<double>& n_samples, const std::string& covariance_type) {
        const Packed p = view(w, mu, cov, offsets);
        dfmr::AggregateOptions opt;
        opt.model = dfmr::parse_covariance_model(covariance_type, p.d);
        opt.threshold = threshold;
        opt.alpha = alpha;
        opt.max_iter = max_iter;
        opt.tol = tol;
        opt.n_starts = n_starts;
        opt.center = dfmr::parse_center_rule(center);
        opt.n_center_sample = n_center_sample;
        opt.seed = seed;
        opt.n_threads = n_threads;
        opt.n_samples = n_samples;
        const dfmr::Method how = dfmr::parse_method(method);
        std::optional<dfmr::AggregateResult> r;
        {
          py::gil_scoped_release release;
          r = dfmr::aggregate(p.build(), how, n_components, opt);
        }
        return aggregate_dict(*r);
      },
      py::arg("weights"), py::arg("means"), py::arg("covariances"), py::arg("offsets"), py::arg("method"),
      py::arg("n_components"), py::arg("threshold") = 0.0, py::arg("alpha") = 0.5, py::arg("max_iter") = 100,
      py::arg("tol") = 1e-5, py::arg("n_starts") = 0, py::arg("center") = "exact", py::arg("n_center_sample") = 50,
      py::arg("seed") = 0, py::arg("n_threads") = 0, py::arg("n_samples") = std::vector<double>{},
      py::arg("covariance_type") = "full");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
}
