#include "dfmr/covariance.hpp"

#include <Eigen/Cholesky>
#include <Eigen/LU>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels.hpp"

namespace dfmr {

namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;
using Stack = std::vector<Mat>;

constexpr const char* kNames[] = {"EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE",
                                  "EVE", "VVE", "EEV", "VEV", "EVV", "VVV", "E",   "V"};
constexpr double kPi = 3.14159265358979323846;

// The iterative M-steps stop when a round changes the objective by at most kInnerTol (1 + |value|)
// (mclust's inner criterion), or after kInnerMaxIter rounds; from a start after kWarmMaxIter: EM
// needs only a step that does not raise its objective (a generalised EM step), and the next E-step
// is worth more than polishing covariances for responsibilities about to change (3 rounds: local
// EM of EVE at K = 5, d = 10 took 1.0x VVV's time, 2.1x with 20 rounds, 1.7x with 1 round, which
// needs more EM iterations).
constexpr double kInnerTol = 1e-12;
constexpr int kInnerMaxIter = 1000;
constexpr int kWarmMaxIter = 3;
// The common orientation's plane rotations are over-relaxed by this factor (see
// common_orientation_sweep; any value in [0, 2] keeps every step a descent).
constexpr double kOverRelaxation = 1.6;
// common_orientation recomputes the rotated scatters D^T W_k D from D every this many sweeps.
constexpr int kExactEvery = 8;

char letter(CovarianceModel model, int i) {
  const char* name = kNames[static_cast<int>(model)];
  return i < static_cast<int>(std::char_traits<char>::length(name)) ? name[i] : '\0';
}

// log det A, -inf unless the determinant is positive (numpy.linalg.slogdet's sign rule). By the
// core's Cholesky (kernels.hpp) where A is positive definite (the usual case: covariances and
// scatters; a fifth of LU's instructions at d = 10), else by LU.
double log_det(const Mat& A) {
  const auto d = static_cast<std::size_t>(A.rows());
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> L = A;  // its lower triangle is A's
  if (detail::cholesky_lower(L.data(), d)) {
    const double out = detail::log_det_chol(L.data(), d);
    if (std::isfinite(out)) return out;
  }
  const Eigen::PartialPivLU<Mat> lu(A);
  const Mat& LU = lu.matrixLU();
  double sign = lu.permutationP().determinant(), out = 0.0;
  for (Eigen::Index i = 0; i < A.rows(); ++i) {
    const double u = LU(i, i);
    if (u < 0.0) sign = -sign;
    out += std::log(std::abs(u));
  }
  return sign > 0.0 && !std::isnan(out) ? out : -std::numeric_limits<double>::infinity();
}

double geometric_mean(const Vec& v) { return std::exp(v.array().log().mean()); }

Vec normalized(const Vec& v) { return v / geometric_mean(v); }

Mat symmetric(const Mat& A) { return 0.5 * (A + A.transpose()); }

// A^T B A (B symmetric) and V diag(v) V^T, written out on the column-major storage: at the sizes of
// a covariance (d of a few to a few tens) Eigen's blocked matrix product spends more on packing
// than on arithmetic, and these products were most of a start's cost in a constrained reduction.
// Both compute the lower triangle and mirror it (half the second product; the result is
// symmetric bit for bit). `scratch` (d x d) is reused across calls.
void congruence(const Mat& A, const Mat& B, Mat& scratch, Mat& out) {
  const Eigen::Index d = A.rows();
  scratch.setZero(d, d);
  out.resize(d, d);
  for (Eigen::Index j = 0; j < d; ++j) {  // scratch = B A, a column at a time
    double* __restrict t = scratch.data() + j * d;
    for (Eigen::Index l = 0; l < d; ++l) {
      const double a = A(l, j);
      const double* __restrict b = B.data() + l * d;
      for (Eigen::Index r = 0; r < d; ++r) t[r] += b[r] * a;
    }
  }
  for (Eigen::Index j = 0; j < d; ++j)
    for (Eigen::Index i = j; i < d; ++i) out(i, j) = out(j, i) = A.col(i).dot(scratch.col(j));
}

Mat rebuild(const Mat& V, const Vec& v) {
  const Eigen::Index d = V.rows();
  Mat out = Mat::Zero(d, d);
  for (Eigen::Index l = 0; l < v.size(); ++l) {  // sum_l v_l V_l V_l^T, lower triangle
    const double* __restrict u = V.data() + l * d;
    for (Eigen::Index j = 0; j < d; ++j) {
      const double f = v[l] * u[j];
      double* __restrict o = out.data() + j * d;
      for (Eigen::Index i = j; i < d; ++i) o[i] += f * u[i];
    }
  }
  for (Eigen::Index j = 0; j < d; ++j)
    for (Eigen::Index i = j + 1; i < d; ++i) out(j, i) = out(i, j);
  return out;
}

Mat pooled(const Stack& W, const Vec& n) {
  Mat out = Mat::Zero(W[0].rows(), W[0].cols());
  for (const Mat& w : W) out += w;
  return out / n.sum();
}

// Runs `step` (one round of block updates, none raising the objective; returns the objective)
// until it settles (see kInnerTol).
void iterate(const std::function<double()>& step, bool warm, int max_rounds) {
  double previous = std::numeric_limits<double>::infinity();
  const int rounds = max_rounds > 0 ? max_rounds : warm ? kWarmMaxIter : kInnerMaxIter;
  for (int r = 0; r < rounds; ++r) {
    const double value = step();
    if (!std::isfinite(value) || std::abs(previous - value) <= kInnerTol * (1.0 + std::abs(value))) return;
    previous = value;
  }
}

// Volumes lambda_k and one shape a (det 1) minimising sum_k [d n_k log lambda_k + sum_j v_kj /
// (lambda_k a_j)], the objective of VEI (v_k the diagonal of W_k) and of VEV (its eigenvalues):
// alternately lambda_k = sum_j v_kj / a_j / (d n_k), then a = sum_k v_k / lambda_k scaled to det 1.
void volumes_and_common_shape(const Mat& values, const Vec& n, Vec& shape, Vec& lam, bool warm, int max_rounds) {
  const auto K = values.rows();
  const double d = static_cast<double>(values.cols());
  lam.resize(K);
  iterate(
      [&] {
        for (Eigen::Index k = 0; k < K; ++k) lam[k] = (values.row(k).transpose().array() / shape.array()).sum() / (d * n[k]);
        Vec total = Vec::Zero(values.cols());
        for (Eigen::Index k = 0; k < K; ++k) total += values.row(k).transpose() / lam[k];
        shape = normalized(total);
        double value = 0.0;
        for (Eigen::Index k = 0; k < K; ++k)
          value += d * n[k] * std::log(lam[k]) + (values.row(k).transpose().array() / shape.array()).sum() / lam[k];
        return value;
      },
      warm, max_rounds);
}

// sqrt(a^2 + b^2), without std::hypot's care for overflow and underflow where the squares are
// safely representable (the symmetric eigen-solver calls it once per plane rotation).
inline double plane_hypot(double a, double b) {
  const double x = std::abs(a), y = std::abs(b), big = std::max(x, y);
  return big < 1e150 && big > 1e-150 ? std::sqrt(x * x + y * y) : std::hypot(a, b);
}

// The tridiagonal QL part of symmetric_eigen (see there): d the diagonal, e the sub-diagonal in
// e[1..n-1], V the accumulated Householder transformation (column-major n x n; null: values only).
DFMR_TARGET_CLONES("arch=x86-64-v3", "default")
void tridiagonal_ql(double* V, double* d, double* e, int n) {
  for (int i = 1; i < n; ++i) e[i - 1] = e[i];
  e[n - 1] = 0.0;
  double f = 0.0, tst1 = 0.0;
  const double eps = std::numeric_limits<double>::epsilon();
  for (int l = 0; l < n; ++l) {
    tst1 = std::max(tst1, std::abs(d[l]) + std::abs(e[l]));
    int m = l;
    while (m < n - 1 && !(std::abs(e[m]) <= eps * tst1)) ++m;
    // Implicit QL steps with Wilkinson's shift until e[l] is negligible (at most 60: more is a
    // matrix no finite input produces; the values are then left as they are).
    for (int iter = 0; m > l && iter < 60 && std::abs(e[l]) > eps * tst1; ++iter) {
      double g = d[l];
      double p = (d[l + 1] - g) / (2.0 * e[l]);
      double r = plane_hypot(p, 1.0);
      if (p < 0) r = -r;
      d[l] = e[l] / (p + r);
      d[l + 1] = e[l] * (p + r);
      const double dl1 = d[l + 1];
      double h = g - d[l];
      for (int i = l + 2; i < n; ++i) d[i] -= h;
      f += h;
      p = d[m];
      double c = 1.0, c2 = c, c3 = c, s = 0.0, s2 = 0.0;
      const double el1 = e[l + 1];
      for (int i = m - 1; i >= l; --i) {
        c3 = c2;
        c2 = c;
        s2 = s;
        g = c * e[i];
        h = c * p;
        r = plane_hypot(p, e[i]);
        e[i + 1] = s * r;
        s = e[i] / r;
        c = p / r;
        p = c * d[i] - s * g;
        d[i + 1] = h + s * (c * g + s * d[i]);
        if (!V) continue;
        double* a = V + static_cast<std::ptrdiff_t>(i) * n;
        double* b = a + n;
        for (int k = 0; k < n; ++k) {
          const double t = b[k];
          b[k] = s * a[k] + c * t;
          a[k] = c * a[k] - s * t;
        }
      }
      p = -s * s2 * c3 * el1 * e[l] / dl1;
      e[l] = s * p;
      d[l] = c * p;
    }
    d[l] += f;
    e[l] = 0.0;
  }
}

// Eigen-decomposition of a symmetric matrix A (both triangles read): eigenvalues ascending,
// vectors in the columns of `vectors`. Householder tridiagonalisation and implicit QL with
// Wilkinson shifts, the EISPACK tred2 / tql2 pair (as in JAMA, public domain), on one
// column-major buffer. Eigen's SelfAdjointEigenSolver does the same in about twice the
// instructions at d = 10 (dynamic-size bookkeeping and allocations), and the reduction's starts of
// EEV and VEV are mostly such decompositions (five per start at K = 5). A non-finite A gives NaN.
// With `values_only` the vectors are neither accumulated nor rotated (`vectors` is scratch).
void symmetric_eigen(const Mat& A, Vec& values, Mat& vectors, bool values_only = false) {
  const int n = static_cast<int>(A.rows());
  values.resize(n);
  if (!A.allFinite()) {
    values.setConstant(std::numeric_limits<double>::quiet_NaN());
    vectors.setConstant(n, n, std::numeric_limits<double>::quiet_NaN());
    return;
  }
  vectors = A;
  double* V = vectors.data();
  double* d = values.data();
  Vec scratch(n);
  double* e = scratch.data();
  auto at = [&](int r, int c) -> double& { return V[static_cast<std::ptrdiff_t>(c) * n + r]; };
  for (int j = 0; j < n; ++j) d[j] = at(n - 1, j);
  for (int i = n - 1; i > 0; --i) {
    double scale = 0.0, h = 0.0;
    for (int k = 0; k < i; ++k) scale += std::abs(d[k]);
    if (scale == 0.0) {
      e[i] = d[i - 1];
      for (int j = 0; j < i; ++j) {
        d[j] = at(i - 1, j);
        at(i, j) = 0.0;
        at(j, i) = 0.0;
      }
    } else {
      for (int k = 0; k < i; ++k) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      double f = d[i - 1], g = std::sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (int j = 0; j < i; ++j) e[j] = 0.0;
      for (int j = 0; j < i; ++j) {
        f = d[j];
        at(j, i) = f;
        g = e[j] + at(j, j) * f;
        for (int k = j + 1; k < i; ++k) {
          g += at(k, j) * d[k];
          e[k] += at(k, j) * f;
        }
        e[j] = g;
      }
      f = 0.0;
      for (int j = 0; j < i; ++j) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const double hh = f / (h + h);
      for (int j = 0; j < i; ++j) e[j] -= hh * d[j];
      for (int j = 0; j < i; ++j) {
        f = d[j];
        g = e[j];
        for (int k = j; k < i; ++k) at(k, j) -= f * e[k] + g * d[k];
        d[j] = at(i - 1, j);
        at(i, j) = 0.0;
      }
    }
    d[i] = h;
  }
  if (values_only) {
    // The tridiagonal's diagonal is on V's diagonal; its sub-diagonal in e[1..n-1].
    for (int i = 0; i < n; ++i) d[i] = at(i, i);
    tridiagonal_ql(nullptr, d, e, n);
    std::sort(d, d + n);
    return;
  }
  // The Householder transformation, accumulated.
  for (int i = 0; i < n - 1; ++i) {
    at(n - 1, i) = at(i, i);
    at(i, i) = 1.0;
    const double h = d[i + 1];
    if (h != 0.0) {
      for (int k = 0; k <= i; ++k) d[k] = at(k, i + 1) / h;
      for (int j = 0; j <= i; ++j) {
        double g = 0.0;
        for (int k = 0; k <= i; ++k) g += at(k, i + 1) * at(k, j);
        for (int k = 0; k <= i; ++k) at(k, j) -= g * d[k];
      }
    }
    for (int k = 0; k <= i; ++k) at(k, i + 1) = 0.0;
  }
  for (int j = 0; j < n; ++j) {
    d[j] = at(n - 1, j);
    at(n - 1, j) = 0.0;
  }
  at(n - 1, n - 1) = 1.0;
  e[0] = 0.0;
  tridiagonal_ql(V, d, e, n);
  // Ascending, by selection (n swaps at most).
  for (int i = 0; i + 1 < n; ++i) {
    int k = i;
    for (int j = i + 1; j < n; ++j)
      if (d[j] < d[k]) k = j;
    if (k != i) {
      std::swap(d[i], d[k]);
      vectors.col(i).swap(vectors.col(k));
    }
  }
}

Mat eigenvectors(const Mat& A) {
  Vec values;
  Mat vectors;
  symmetric_eigen(A, values, vectors);
  return vectors;
}

Vec start_values(const Mat& A) {
  Vec values;
  Mat scratch;
  symmetric_eigen(A, values, scratch, true);
  return values;
}

// Eigen-decompositions of the W_k: eigenvalues ascending (rows of `values`), vectors in columns.
void eigen_all(const Stack& W, Mat& values, Stack& vectors) {
  const auto K = static_cast<Eigen::Index>(W.size()), d = W[0].rows();
  values.resize(K, d);
  vectors.assign(W.size(), Mat());
  Vec v;
  for (Eigen::Index k = 0; k < K; ++k) {
    symmetric_eigen(W[static_cast<std::size_t>(k)], v, vectors[static_cast<std::size_t>(k)]);
    values.row(k) = v.transpose();
  }
}

Stack from_diagonals(const Mat& diagonals) {
  Stack out;
  for (Eigen::Index k = 0; k < diagonals.rows(); ++k) out.push_back(diagonals.row(k).transpose().asDiagonal());
  return out;
}

Mat diagonals(const Stack& W) {
  Mat out(static_cast<Eigen::Index>(W.size()), W[0].rows());
  for (std::size_t k = 0; k < W.size(); ++k) out.row(static_cast<Eigen::Index>(k)) = W[k].diagonal().transpose();
  return out;
}

// ---- closed forms

Stack m_eii(const Stack& W, const Vec& n) {
  const auto d = W[0].rows();
  double traces = 0.0;
  for (const Mat& w : W) traces += w.trace();
  const double lam = traces / (n.sum() * static_cast<double>(d));
  return Stack(W.size(), lam * Mat::Identity(d, d));
}

Stack m_vii(const Stack& W, const Vec& n) {
  const auto d = W[0].rows();
  Stack out;
  for (std::size_t k = 0; k < W.size(); ++k)
    out.push_back(W[k].trace() / (n[static_cast<Eigen::Index>(k)] * static_cast<double>(d)) * Mat::Identity(d, d));
  return out;
}

Stack m_eei(const Stack& W, const Vec& n) {
  return Stack(W.size(), Mat(pooled(W, n).diagonal().asDiagonal()));
}

Stack m_vvi(const Stack& W, const Vec& n) {
  Mat diag = diagonals(W);
  for (Eigen::Index k = 0; k < diag.rows(); ++k) diag.row(k) /= n[k];
  return from_diagonals(diag);
}

// A_k = diag(W_k) / det(diag W_k)^(1/d), lambda = sum_k det(diag W_k)^(1/d) / sum_k n_k.
Stack m_evi(const Stack& W, const Vec& n) {
  Mat diag = diagonals(W);
  Vec volume(diag.rows());
  for (Eigen::Index k = 0; k < diag.rows(); ++k) volume[k] = geometric_mean(diag.row(k).transpose());
  const double lam = volume.sum() / n.sum();
  for (Eigen::Index k = 0; k < diag.rows(); ++k) diag.row(k) *= lam / volume[k];
  return from_diagonals(diag);
}

Stack m_eee(const Stack& W, const Vec& n) { return Stack(W.size(), pooled(W, n)); }

// W_k = L_k diag(omega_k) L_k^T (eigenvalues ascending for every k): D_k = L_k and
// lambda A = sum_k diag(omega_k) / sum_k n_k.
Stack m_eev(const Stack& W, const Vec& n) {
  Mat omega;
  Stack L;
  eigen_all(W, omega, L);
  const Vec common = omega.colwise().sum().transpose() / n.sum();
  Stack out;
  for (const Mat& l : L) out.push_back(rebuild(l, common));
  return out;
}

// C_k = W_k / det(W_k)^(1/d), lambda = sum_k det(W_k)^(1/d) / sum_k n_k.
Stack m_evv(const Stack& W, const Vec& n) {
  const double d = static_cast<double>(W[0].rows());
  Vec volume(static_cast<Eigen::Index>(W.size()));
  for (std::size_t k = 0; k < W.size(); ++k) volume[static_cast<Eigen::Index>(k)] = std::exp(log_det(W[k]) / d);
  const double lam = volume.sum() / n.sum();
  Stack out;
  for (std::size_t k = 0; k < W.size(); ++k) out.push_back(W[k] * (lam / volume[static_cast<Eigen::Index>(k)]));
  return out;
}

Stack m_vvv(const Stack& W, const Vec& n) {
  Stack out;
  for (std::size_t k = 0; k < W.size(); ++k) out.push_back(W[k] / n[static_cast<Eigen::Index>(k)]);
  return out;
}

// ---- iterative forms

// Sigma_k = lambda_k B, B diagonal with det 1.
Stack m_vei(const Stack& W, const Vec& n, const Stack& start, int max_rounds) {
  const Mat diag = diagonals(W);
  Vec B = start.empty() ? Vec::Ones(W[0].rows()) : normalized(start[0].diagonal());
  Vec lam;
  volumes_and_common_shape(diag, n, B, lam, !start.empty(), max_rounds);
  Mat out(diag.rows(), diag.cols());
  for (Eigen::Index k = 0; k < diag.rows(); ++k) out.row(k) = lam[k] * B.transpose();
  return from_diagonals(out);
}

// Sigma_k = lambda_k C: lambda_k = tr(W_k C^-1) / (d n_k), then C = sum_k W_k / lambda_k scaled to det 1.
Stack m_vee(const Stack& W, const Vec& n, const Stack& start, int max_rounds) {
  const auto d = W[0].rows();
  const double dd = static_cast<double>(d);
  const auto K = static_cast<Eigen::Index>(W.size());
  Mat C = start.empty() ? Mat(Mat::Identity(d, d)) : Mat(start[0] / std::exp(log_det(start[0]) / dd));
  Vec lam(K);
  auto traces = [&](const Mat& c) {
    const Mat inv = c.inverse();
    Vec t(K);
    for (Eigen::Index k = 0; k < K; ++k) t[k] = W[static_cast<std::size_t>(k)].cwiseProduct(inv.transpose()).sum();
    return t;
  };
  iterate(
      [&] {
        lam = traces(C).array() / (dd * n.array());
        Mat total = Mat::Zero(d, d);
        for (Eigen::Index k = 0; k < K; ++k) total += W[static_cast<std::size_t>(k)] / lam[k];
        C = symmetric(total / std::exp(log_det(total) / dd));
        const Vec t = traces(C);
        double value = 0.0;
        for (Eigen::Index k = 0; k < K; ++k) value += dd * n[k] * std::log(lam[k]) + t[k] / lam[k];
        return value;
      },
      !start.empty(), max_rounds);
  Stack out;
  for (Eigen::Index k = 0; k < K; ++k) out.push_back(lam[k] * C);
  return out;
}

// Sigma_k = lambda_k D_k A D_k^T: D_k the eigenvectors of W_k, with its eigenvalues in the same
// order for every k as A's, which leaves VEI's problem in the eigenvalues.
Stack m_vev(const Stack& W, const Vec& n, const Stack& start, int max_rounds) {
  Mat omega;
  Stack L;
  eigen_all(W, omega, L);
  // A start that is the scatters themselves (a reduction's start brought into the model) has its
  // eigenvalues in omega already: a sixth of the eigen-decompositions of such a start at K = 5.
  Vec A = start.empty()       ? Vec::Ones(W[0].rows())
          : start[0] == W[0]  ? normalized(omega.row(0).transpose())
                              : normalized(start_values(start[0]));
  Vec lam;
  volumes_and_common_shape(omega, n, A, lam, !start.empty(), max_rounds);
  Stack out;
  for (std::size_t k = 0; k < W.size(); ++k)
    out.push_back(rebuild(L[k], lam[static_cast<Eigen::Index>(k)] * A));
  return out;
}

// Orthogonal D diagonalising every Sigma_k of a model with a common orientation: the eigenvectors
// of sum_k c_k Sigma_k / det(Sigma_k)^(1/d), eigenvalues decreasing, with unequal weights
// c_k = 1 / (k + pi) (distinct eigenvalues unless the components are all equal on some plane).
Mat shared_orientation(const Stack& cov) {
  const auto d = cov[0].rows();
  Mat total = Mat::Zero(d, d);
  for (std::size_t k = 0; k < cov.size(); ++k)
    total += cov[k] / (static_cast<double>(k) + kPi) / std::exp(log_det(cov[k]) / static_cast<double>(d));
  return eigenvectors(total).rowwise().reverse();
}

// The shapes and volumes Delta_k (rows of `deltas`) of EVE (equal_volume) or VVE minimising the
// objective for the orientation D, from the diagonals of M_k = D^T W_k D: VVE diag(M_k) / n_k; EVE
// the shape of diag(M_k) (det 1) times the one volume sum_k det(diag M_k)^(1/d) / sum_k n_k.
void orientation_deltas(const Stack& M, const Vec& n, bool equal_volume, Mat& deltas) {
  const auto K = static_cast<Eigen::Index>(M.size());
  if (!equal_volume) {
    for (Eigen::Index k = 0; k < K; ++k) deltas.row(k) = M[static_cast<std::size_t>(k)].diagonal().transpose() / n[k];
    return;
  }
  Vec volume(K);
  for (Eigen::Index k = 0; k < K; ++k) volume[k] = geometric_mean(M[static_cast<std::size_t>(k)].diagonal());
  const double lam = volume.sum() / n.sum();
  for (Eigen::Index k = 0; k < K; ++k) deltas.row(k) = M[static_cast<std::size_t>(k)].diagonal().transpose() * (lam / volume[k]);
}

// One Jacobi sweep lowering g(D) = sum_k tr(D^T W_k D Delta_k^-1) over orthogonal D for fixed
// Delta_k (rows of `deltas`), M_k = D^T W_k D kept up to date: for every plane (i, j) in turn, the
// rotation of columns i and j of D by the angle that minimises g exactly. With a = M_k[i,i],
// b = M_k[i,j], e = M_k[j,j] and u_k, v_k the entries i, j of Delta_k^-1, rotating by theta changes
// g by P (cos 2 theta - 1) + Q sin 2 theta, P = sum_k (a - e) (u - v) / 2, Q = sum_k b (u - v): its
// minimum is at (cos 2 theta, sin 2 theta) = -(P, Q) / sqrt(P^2 + Q^2) and lowers g by
// P + sqrt(P^2 + Q^2) >= 0 (Flury & Gautschi's plane-by-plane idea for common principal
// components). A sweep costs O(K d^3), as one majorise-minimise step of Browne & McNicholas (2014)
// does, and needs far fewer rounds (each plane's step is exact, not a bound's minimum). (Updating
// the Delta_k after every plane instead of after the sweep did not save rounds.)
void common_orientation_sweep(Stack& M, Mat& D, const Mat& inv) {
  const auto K = static_cast<Eigen::Index>(M.size()), d = D.rows();
  for (Eigen::Index i = 0; i + 1 < d; ++i)
    for (Eigen::Index j = i + 1; j < d; ++j) {
      double P = 0.0, Q = 0.0, scale = 0.0;
      for (Eigen::Index k = 0; k < K; ++k) {
        const Mat& m = M[static_cast<std::size_t>(k)];
        const double u = inv(k, i), v = inv(k, j);
        P += 0.5 * (m(i, i) - m(j, j)) * (u - v);
        Q += m(i, j) * (u - v);
        scale += m(i, i) * u + m(j, j) * v;
      }
      const double r = std::hypot(P, Q);
      // A step that cannot lower g beyond rounding is skipped (the plane is already optimal).
      if (!(P + r > 1e-15 * scale)) continue;
      // The minimiser theta* = atan2(-Q, -P) / 2, over-relaxed: rotating by omega theta* changes g by
      // -r cos((omega - 1) 2 theta*) - P, which for 0 <= omega <= 2 is at most the change 0 of
      // theta = 0 (|2 theta*| <= pi), so every plane still lowers g; omega > 1 carries each plane
      // past its own optimum in the direction that the coupled planes' next steps continue, and
      // halved the rounds of misspecified problems (K = 5, d = 10) at 1.6.
      const double theta = 0.5 * kOverRelaxation * std::atan2(-Q, -P), c = std::cos(theta), s = std::sin(theta);
      // R^T M R: columns i and j rotated (contiguous), then rows i and j copied from them (M is
      // symmetric, so outside the 2 x 2 block the rows are the columns), the block rotated on both
      // sides in closed form. (Rotating the rows as well was half of a sweep's arithmetic.)
      const double cc = c * c, ss = s * s, cs = c * s;
      for (Eigen::Index k = 0; k < K; ++k) {
        Mat& m = M[static_cast<std::size_t>(k)];
        double* __restrict a = m.data() + i * d;
        double* __restrict b = m.data() + j * d;
        const double p = a[i], q = b[i], e = b[j];
        for (Eigen::Index l = 0; l < d; ++l) {
          const double x = a[l], y = b[l];
          a[l] = c * x + s * y;
          b[l] = c * y - s * x;
        }
        a[i] = cc * p + 2.0 * cs * q + ss * e;
        b[j] = ss * p - 2.0 * cs * q + cc * e;
        a[j] = b[i] = cs * (e - p) + (cc - ss) * q;
        for (Eigen::Index l = 0; l < d; ++l) {
          m(i, l) = a[l];
          m(j, l) = b[l];
        }
      }
      for (Eigen::Index l = 0; l < d; ++l) {
        const double x = D(l, i), y = D(l, j);
        D(l, i) = c * x + s * y;
        D(l, j) = c * y - s * x;
      }
    }
}

// EVE (equal_volume) and VVE: Sigma_k = D Delta_k D^T with one orientation D, found by
// common_orientation_sweep from the start's orientation (shared_orientation) or, without one, the
// eigenvectors of sum_k W_k / n_k.
Stack common_orientation(const Stack& W, const Vec& n, const Stack& start, bool equal_volume, int max_rounds) {
  const auto K = static_cast<Eigen::Index>(W.size()), d = W[0].rows();
  Mat deltas(K, d), D;
  Stack M(W.size());
  if (start.empty()) {
    Mat total = Mat::Zero(d, d);
    for (Eigen::Index k = 0; k < K; ++k) total += W[static_cast<std::size_t>(k)] / n[k];
    D = eigenvectors(total);
  } else {
    D = shared_orientation(start);
  }
  // The deltas and the objective from the M_k; with `exact` the M_k afresh from D first. The sweeps
  // rotate the M_k in place, which accumulates rounding (a few ulps per round, far below the inner
  // tolerance), so they are recomputed only every kExactEvery rounds and for the result: computing
  // them every round was a third of a round's cost.
  Mat scratch;
  auto refresh = [&](bool exact) {
    if (exact)
      for (Eigen::Index k = 0; k < K; ++k)
        congruence(D, W[static_cast<std::size_t>(k)], scratch, M[static_cast<std::size_t>(k)]);
    orientation_deltas(M, n, equal_volume, deltas);
    double value = 0.0;
    for (Eigen::Index k = 0; k < K; ++k)
      value += n[k] * deltas.row(k).array().log().sum() +
               (M[static_cast<std::size_t>(k)].diagonal().transpose().array() / deltas.row(k).array()).sum();
    return value;
  };
  refresh(true);
  int round = 0;
  iterate(
      [&] {
        common_orientation_sweep(M, D, deltas.cwiseInverse());
        return refresh(++round % kExactEvery == 0);
      },
      !start.empty(), max_rounds);
  if (round % kExactEvery != 0) refresh(true);
  Stack out;
  for (Eigen::Index k = 0; k < K; ++k) out.push_back(rebuild(D, deltas.row(k).transpose()));
  return out;
}

}  // namespace

CovarianceModel parse_covariance_model(const std::string& name, std::size_t dim) {
  if (dim == 0) throw std::invalid_argument("dfmr: covariance model: dimension must be >= 1");
  struct Sk {
    const char* name;
    CovarianceModel multivariate, univariate;
  };
  static constexpr Sk sklearn[] = {{"full", CovarianceModel::VVV, CovarianceModel::V},
                                   {"tied", CovarianceModel::EEE, CovarianceModel::E},
                                   {"diag", CovarianceModel::VVI, CovarianceModel::V},
                                   {"spherical", CovarianceModel::VII, CovarianceModel::V}};
  for (const Sk& s : sklearn)
    if (name == s.name) return dim == 1 ? s.univariate : s.multivariate;
  for (int i = 0; i < static_cast<int>(sizeof kNames / sizeof kNames[0]); ++i)
    if (name == kNames[i]) return covariance_model_for_dim(static_cast<CovarianceModel>(i), dim);
  throw std::invalid_argument("dfmr: unknown covariance model '" + name +
                              "' (expected full, tied, diag, spherical or an mclust model name: EII, VII, EEI, VEI, "
                              "EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV; E, V when d = 1)");
}

const char* covariance_model_name(CovarianceModel model) { return kNames[static_cast<int>(model)]; }

CovarianceModel covariance_model_for_dim(CovarianceModel model, std::size_t dim) {
  const bool univariate = model == CovarianceModel::E || model == CovarianceModel::V;
  if (dim == 1) return letter(model, 0) == 'E' ? CovarianceModel::E : CovarianceModel::V;
  if (univariate)
    throw std::invalid_argument(std::string("dfmr: covariance model ") + covariance_model_name(model) +
                                " is for one-dimensional data, got d = " + std::to_string(dim) +
                                "; use EII or VII (or spherical) instead");
  return model;
}

bool covariance_model_is_iterative(CovarianceModel model) {
  switch (model) {
    case CovarianceModel::VEI:
    case CovarianceModel::VEE:
    case CovarianceModel::EVE:
    case CovarianceModel::VVE:
    case CovarianceModel::VEV: return true;
    default: return false;
  }
}

bool covariance_model_is_coupled(CovarianceModel model) {
  for (int i = 0; i < 3; ++i)
    if (letter(model, i) == 'E') return true;
  return false;
}

namespace {

Stack m_step(CovarianceModel model, const Stack& scatter, const Vec& counts, const Stack& start, int max_rounds) {
  const std::size_t K = scatter.size();
  if (K == 0) throw std::invalid_argument("dfmr::constrained_m_step: no scatter matrices");
  const auto d = scatter[0].rows();
  for (const Mat& w : scatter)
    if (w.rows() != d || w.cols() != d || d == 0)
      throw std::invalid_argument("dfmr::constrained_m_step: scatter matrices must all be d x d, d >= 1");
  if (static_cast<std::size_t>(counts.size()) != K)
    throw std::invalid_argument("dfmr::constrained_m_step: need one count per scatter matrix");
  if (!start.empty()) {
    if (start.size() != K) throw std::invalid_argument("dfmr::constrained_m_step: start must hold K covariances");
    for (const Mat& s : start)
      if (s.rows() != d || s.cols() != d) throw std::invalid_argument("dfmr::constrained_m_step: start must be d x d");
  }
  const bool univariate = model == CovarianceModel::E || model == CovarianceModel::V;
  if (univariate != (d == 1))
    throw std::invalid_argument(std::string("dfmr::constrained_m_step: covariance model ") +
                                covariance_model_name(model) + (univariate ? " is for d = 1" : " is for d >= 2") +
                                ", got d = " + std::to_string(d));
  Stack out;
  if (covariance_model_is_iterative(model)) {
    bool ok = (counts.array() > 0.0).all();
    for (const Mat& w : scatter) ok = ok && w.allFinite();
    if (!ok) return Stack(K, Mat::Constant(d, d, std::numeric_limits<double>::quiet_NaN()));
  }
  switch (model) {
    case CovarianceModel::EII: out = m_eii(scatter, counts); break;
    case CovarianceModel::VII: out = m_vii(scatter, counts); break;
    case CovarianceModel::EEI: out = m_eei(scatter, counts); break;
    case CovarianceModel::VEI: out = m_vei(scatter, counts, start, max_rounds); break;
    case CovarianceModel::EVI: out = m_evi(scatter, counts); break;
    case CovarianceModel::VVI: out = m_vvi(scatter, counts); break;
    case CovarianceModel::E:
    case CovarianceModel::EEE: out = m_eee(scatter, counts); break;
    case CovarianceModel::VEE: out = m_vee(scatter, counts, start, max_rounds); break;
    case CovarianceModel::EVE: out = common_orientation(scatter, counts, start, true, max_rounds); break;
    case CovarianceModel::VVE: out = common_orientation(scatter, counts, start, false, max_rounds); break;
    case CovarianceModel::EEV: out = m_eev(scatter, counts); break;
    case CovarianceModel::VEV: out = m_vev(scatter, counts, start, max_rounds); break;
    case CovarianceModel::EVV: out = m_evv(scatter, counts); break;
    case CovarianceModel::V:
    case CovarianceModel::VVV: out = m_vvv(scatter, counts); break;
  }
  // 0.5 (S + S^T) in place (the same bits as forming it, without a temporary per matrix).
  for (Mat& s : out)
    for (Eigen::Index j = 0; j < s.cols(); ++j)
      for (Eigen::Index i = j + 1; i < s.rows(); ++i) s(i, j) = s(j, i) = 0.5 * (s(i, j) + s(j, i));
  return out;
}

}  // namespace

std::vector<Eigen::MatrixXd> constrained_m_step(CovarianceModel model, const std::vector<Eigen::MatrixXd>& scatter,
                                                const Eigen::VectorXd& counts, const std::vector<Eigen::MatrixXd>& start,
                                                int max_rounds) {
  if (max_rounds < 0) throw std::invalid_argument("dfmr::constrained_m_step: max_rounds must be >= 0 (0: the defaults)");
  return m_step(model, scatter, counts, start, max_rounds);
}

}  // namespace dfmr
