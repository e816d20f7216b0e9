"""The compiled core of this checkout against the core of an earlier commit, in one process.

Both cores are compiled from source (``git archive BASELINE cpp`` for the baseline, ``cpp/`` of
the working tree for the current one), each inside its own C++ namespace, into one C++ program
that runs the two alternately on the same local estimates (those of bench_scaling_m.py: K = 5,
d = 10, 20% mean-attacked): the pairwise L2 distances and plain MR with every start (or with
``--starts S`` evenly spaced machines), or (``--what sampled``) DFMR with the sampled centre rule
(50 machines, seed 0, n_starts = S). Printed:
medians and quartiles of each core's time and of the per-repetition ratio baseline / current,
and the largest relative difference between the results (every distance; for MR every field the
two cores' results share: every start's objective, the winner, its objective trace, the reduced
mixture and the transport plan; for sampled DFMR the objective, the centre, the retained machines
and the reduced mixture). Alternating in one process is what makes ratios trustworthy on
a shared machine; the absolute times are not. Asserts nothing about time.

Run: ``python tests/benchmarks/bench_core_versions.py`` (the issue-12 baseline 84103e9, distances
at m = 600 and 1000 on 1 and 2 threads); ``--what mr --baseline 56ab26d --m 400`` for the
reduction; ``--quick`` for a smoke run (``--baseline HEAD`` compares the core with itself).
Needs g++, git and the Eigen headers (cmeel-eigen).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from bench_scaling_m import K, local_estimates  # noqa: E402

# Helpers of both wrappers (each compiles its own copy, in an anonymous namespace).
COMMON = r"""
#include <dfmr/mixture.hpp>
#include <vector>
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
namespace {
std::vector<dfmr::Mixture> mixtures(const double* w, const double* mu, const double* cov, long m, long K, long d) {
  std::vector<dfmr::Mixture> fs;
  for (long i = 0; i < m; ++i) fs.emplace_back(K, d, w + i * K, mu + i * K * d, cov + i * K * d * d);
  return fs;
}
// The reduced weights, means and covariances into o (K * (1 + d + d * d) doubles, padded to K).
void write_mixture(const dfmr::Mixture& f, long K, long d, double* o) {
  for (long k = 0; k < static_cast<long>(f.n_components()); ++k) {
    o[k] = f.weights()[k];
    for (long i = 0; i < d; ++i) o[K + k * d + i] = f.means()(k, i);
    for (long i = 0; i < d * d; ++i) o[K + K * d + k * d * d + i] = f.covariance_data()[k * d * d + i];
  }
}
}
"""

WRAPPER = COMMON + r"""
#include <dfmr/distance.hpp>
#include <dfmr/reduction.hpp>
extern "C" void CAT(l2_, TAG)(const double* w, const double* mu, const double* cov, long m, long K, long d,
                              int threads, double* out) {
  const Eigen::MatrixXd D = dfmr::pairwise_l2(mixtures(w, mu, cov, m, K, d), threads);
  for (long i = 0; i < m * m; ++i) out[i] = D.data()[i];
}
// MR with every start (n_starts = 0) or with the n_starts machines s m / n_starts; `out` (mr_size
// doubles, zero-filled) receives every field the two cores' results share: objective, winning
// start, every start's objective, the winner's objective trace, the reduced weights, means and
// covariances, and the transport plan (padded to K components).
extern "C" void CAT(mr_, TAG)(const double* w, const double* mu, const double* cov, long m, long K, long d,
                              int threads, long n_starts, double* out) {
  dfmr::ReduceOptions opt;
  opt.n_threads = threads;
  const std::vector<dfmr::Mixture> fs = mixtures(w, mu, cov, m, K, d);
  std::vector<dfmr::Mixture> starts;
  for (long s = 0; s < n_starts; ++s) starts.push_back(fs[static_cast<std::size_t>(s * m / n_starts)]);
  const dfmr::ReduceResult r = n_starts == 0 ? dfmr::reduce_mixtures(fs, static_cast<int>(K), opt)
                                             : dfmr::reduce(dfmr::pool(fs), starts, static_cast<int>(K), opt);
  double* o = out;
  *o++ = r.objective;
  *o++ = r.start_index;
  for (long s = 0; s < m && s < static_cast<long>(r.start_objectives.size()); ++s) o[s] = r.start_objectives[s];
  o += m;
  const long n_trace = static_cast<long>(r.objective_trace.size());
  for (long t = 0; t <= opt.max_iter && t < n_trace; ++t) o[t] = r.objective_trace[t];
  o += opt.max_iter + 1;
  write_mixture(r.mixture, K, d, o);
  o += K * (1 + d + d * d);
  for (long n = 0; n < r.assignment.rows(); ++n)
    for (long k = 0; k < r.assignment.cols(); ++k) o[n * K + k] = r.assignment(n, k);
}
"""

# DFMR with the sampled centre rule (only compiled when asked for: older cores lack it). `out`
# (sampled_size doubles, zero-filled): objective, centre, number retained, the retained machines
# (m slots), the reduced weights, means and covariances.
SAMPLED_WRAPPER = COMMON + r"""
#include <dfmr/aggregate.hpp>
extern "C" void CAT(sampled_, TAG)(const double* w, const double* mu, const double* cov, long m, long K, long d,
                                   int threads, long n_starts, double* out) {
  const std::vector<dfmr::Mixture> fs = mixtures(w, mu, cov, m, K, d);
  dfmr::AggregateOptions opt;
  opt.n_threads = threads;
  opt.n_starts = static_cast<int>(n_starts);
  opt.center = dfmr::CenterRule::sampled;
  opt.n_center_sample = 50;
  opt.seed = 0;
  const dfmr::AggregateResult r = dfmr::aggregate(fs, dfmr::Method::dfmr, static_cast<int>(K), opt);
  double* o = out;
  *o++ = r.objective;
  *o++ = static_cast<double>(r.filter->center);
  *o++ = static_cast<double>(r.retained.size());
  for (std::size_t i = 0; i < r.retained.size(); ++i) o[i] = static_cast<double>(r.retained[i]);
  o += m;
  write_mixture(r.mixture, K, d, o);
}
"""

DRIVER = r"""
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
extern "C" void l2_base(const double*, const double*, const double*, long, long, long, int, double*);
extern "C" void l2_new(const double*, const double*, const double*, long, long, long, int, double*);
extern "C" void mr_base(const double*, const double*, const double*, long, long, long, int, long, double*);
extern "C" void mr_new(const double*, const double*, const double*, long, long, long, int, long, double*);
// Present only when the program was built with the sampled centre (see SAMPLED_WRAPPER).
extern "C" __attribute__((weak)) void sampled_base(const double*, const double*, const double*, long, long, long, int,
                                                   long, double*);
extern "C" __attribute__((weak)) void sampled_new(const double*, const double*, const double*, long, long, long, int,
                                                  long, double*);
static double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * (v.size() - 1) + 0.5)];
}
int main(int argc, char** argv) {
  // driver FILE WHAT THREADS REPS STARTS
  FILE* f = std::fopen(argv[1], "rb");
  long long h[3];
  if (std::fread(h, sizeof h, 1, f) != 1) return 2;
  const long m = h[0], K = h[1], d = h[2];
  std::vector<double> w(m * K), mu(m * K * d), cov(m * K * d * d), Db(m * m), Dn(m * m);
  if (std::fread(w.data(), 8, w.size(), f) != w.size() || std::fread(mu.data(), 8, mu.size(), f) != mu.size() ||
      std::fread(cov.data(), 8, cov.size(), f) != cov.size()) return 2;
  const bool l2 = !std::strcmp(argv[2], "l2"), sampled = !std::strcmp(argv[2], "sampled");
  if (sampled && !(sampled_base && sampled_new)) return 3;
  const int threads = std::atoi(argv[3]), reps = std::atoi(argv[4]);
  const long starts = std::atol(argv[5]);
  // MR: objective, start index, m start objectives, a trace of up to 101 values (max_iter 100),
  // K reduced components, the m K x K plan.
  // Sampled DFMR: objective, centre, number retained, m retained, K reduced components.
  const long mr_size = sampled ? 3 + m + K * (1 + d + d * d) : 2 + m + 101 + K * (1 + d + d * d) + m * K * K;
  std::vector<double> tb, tn, ratio, Rb(mr_size), Rn(mr_size);
  for (int r = 0; r < reps; ++r) {
    for (int s = 0; s < 2; ++s) {
      const bool base = (s == 0) == (r % 2 == 0);  // alternate which core goes first
      std::vector<double>& R = base ? Rb : Rn;
      std::fill(R.begin(), R.end(), 0.0);
      const auto t0 = std::chrono::steady_clock::now();
      if (l2) (base ? l2_base : l2_new)(w.data(), mu.data(), cov.data(), m, K, d, threads, (base ? Db : Dn).data());
      else if (sampled)
        (base ? sampled_base : sampled_new)(w.data(), mu.data(), cov.data(), m, K, d, threads, starts, R.data());
      else (base ? mr_base : mr_new)(w.data(), mu.data(), cov.data(), m, K, d, threads, starts, R.data());
      (base ? tb : tn).push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    ratio.push_back(tb.back() / tn.back());
  }
  // Largest relative difference over every entry (distances; or every field of the MR results).
  const std::vector<double>& A = l2 ? Db : Rb;
  const std::vector<double>& B = l2 ? Dn : Rn;
  double diff = 0.0;
  for (std::size_t i = 0; i < A.size(); ++i)
    if (A[i] != B[i]) diff = std::max(diff, std::abs(A[i] - B[i]) / std::max(std::abs(A[i]), std::abs(B[i])));
  char label[64];
  if (l2) std::snprintf(label, sizeof label, "pairwise L2");
  else if (sampled) std::snprintf(label, sizeof label, "DFMR (sampled centre of 50, %ld starts)", starts);
  else if (starts == 0) std::snprintf(label, sizeof label, "MR (all starts)");
  else std::snprintf(label, sizeof label, "MR (%ld starts)", starts);
  std::printf("%s m = %ld, %d thread(s), %d alternating runs: baseline %.3f s, current %.3f s (medians); "
              "baseline / current: median %.2fx, quartiles %.2fx .. %.2fx, range %.2fx .. %.2fx; "
              "largest relative difference %.1e\n",
              label, m, threads, reps, quantile(tb, 0.5), quantile(tn, 0.5),
              quantile(ratio, 0.5), quantile(ratio, 0.25), quantile(ratio, 0.75), quantile(ratio, 0.0),
              quantile(ratio, 1.0), diff);
}
"""


def eigen_include() -> str:
    prefix = subprocess.run([sys.executable, "-m", "cmeel", "cmake"], capture_output=True, text=True,
                            check=True).stdout.strip()
    return str(Path(prefix) / "include" / "eigen3")


def build(baseline: str, work: Path, sampled: bool = False) -> Path:
    """Compile both cores (namespaces dfmr_base and dfmr_new) and the driver; return the program.
    With ``sampled``, the aggregation too (cores from before the sampled centre rule lack it)."""
    base_src = work / "base"
    base_src.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", baseline, "cpp"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(base_src)], input=archive.stdout, check=True)
    (work / "wrapper.cpp").write_text(WRAPPER)
    (work / "sampled.cpp").write_text(SAMPLED_WRAPPER)
    (work / "driver.cpp").write_text(DRIVER)
    flags = ["-O3", "-DNDEBUG", "-std=c++17", "-fopenmp-simd", "-fno-math-errno", "-pthread", "-w",
             f"-I{eigen_include()}"]
    compiles = []  # (command, object): independent translation units, compiled side by side below
    for tag, src in (("base", base_src), ("new", ROOT)):
        ns = [f"-Ddfmr=dfmr_{tag}", f"-I{src / 'cpp' / 'include'}"]
        # Cores since issue 21 compile their covariance models as a unit of their own.
        covariance = ["covariance"] if (src / "cpp" / "src" / "covariance.cpp").exists() else []
        for unit in ("mixture", "distance", *covariance, "reduction", *(["aggregate"] if sampled else [])):
            obj = work / f"{tag}_{unit}.o"
            compiles.append((["g++", *flags, *ns, "-c", str(src / "cpp" / "src" / f"{unit}.cpp"), "-o", str(obj)],
                             obj))
        obj = work / f"{tag}_wrapper.o"
        compiles.append((["g++", *flags, *ns, f"-DTAG={tag}", "-c", str(work / "wrapper.cpp"), "-o", str(obj)], obj))
        if sampled:
            obj = work / f"{tag}_sampled.o"
            compiles.append((["g++", *flags, *ns, f"-DTAG={tag}", "-c", str(work / "sampled.cpp"), "-o", str(obj)],
                             obj))
    # One compiler per CPU: the same commands and objects as one after the other, in less wall time.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: subprocess.run(job[0], check=True), compiles))
    objects = [str(obj) for _, obj in compiles]
    program = work / "compare"
    subprocess.run(["g++", "-O2", "-pthread", str(work / "driver.cpp"), *objects, "-o", str(program)], check=True)
    return program


def write_estimates(path: Path, m: int) -> None:
    local = local_estimates(m, seed=m)
    d = local[0].means.shape[1]
    with open(path, "wb") as f:
        np.array([m, K, d], dtype=np.int64).tofile(f)
        np.concatenate([p.weights for p in local]).astype(np.float64).tofile(f)
        np.concatenate([p.means.ravel() for p in local]).astype(np.float64).tofile(f)
        np.concatenate([p.covariances.ravel() for p in local]).astype(np.float64).tofile(f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="84103e9", help="git revision of the baseline core")
    parser.add_argument("--what", choices=["l2", "mr", "sampled"], nargs="+", default=["l2"],
                        help="pairwise L2, plain MR, or DFMR with the sampled centre rule (50 machines)")
    parser.add_argument("--m", type=int, nargs="+", default=[600, 1000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--starts", type=int, default=0,
                        help="MR with this many starts (machines s m / STARTS) instead of every machine; "
                             "sampled DFMR with this n_starts (0: every retained machine)")
    parser.add_argument("--quick", action="store_true", help="m = 40, 2 repetitions, 1 thread, both kinds")
    args = parser.parse_args(argv)
    if args.quick:
        args.m, args.threads, args.reps, args.what = [40], [1], 2, ["l2", "mr"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    print(f"baseline core: {args.baseline}; current core: the working tree at {head}")
    with tempfile.TemporaryDirectory(prefix="dfmr-cores-") as tmp:
        work = Path(tmp)
        program = build(args.baseline, work, sampled="sampled" in args.what)
        for m in args.m:
            data = work / f"local{m}.bin"
            write_estimates(data, m)
            for what in args.what:
                for threads in args.threads:
                    out = subprocess.run([str(program), str(data), what, str(threads), str(args.reps),
                                          str(args.starts)],
                                         capture_output=True, text=True, check=True).stdout
                    print(out.strip(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
