// Covariance models: mclust's fourteen (and E, V in one dimension), scikit-learn's four by their
// mclust names, and each model's constrained M-step. One implementation, used by the reduction's
// MM update and (through the bindings) by the Python package's local EM.
//
// mclust writes Sigma_k = lambda_k D_k A_k D_k^T: volume lambda_k = det(Sigma_k)^(1/d), shape A_k
// (diagonal, det 1), orientation D_k (orthogonal); a model's three letters say whether each is
// Equal across components, Variable, or the Identity. scikit-learn's "full", "tied", "diag" and
// "spherical" are VVV, EEE, VVI and VII.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <string>
#include <vector>

namespace dfmr {

enum class CovarianceModel { EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV, E, V };

// The model named `name` for `dim`-dimensional data, as python/dfmr/covariance.py's get_model:
// scikit-learn's names (full = VVV, tied = EEE, diag = VVI, spherical = VII) or mclust's. In one
// dimension only E and V exist: "tied" is E, the other scikit-learn names V, and an mclust name is
// the model of its volume letter. Throws std::invalid_argument for an unknown name, or E / V with
// dim >= 2.
CovarianceModel parse_covariance_model(const std::string& name, std::size_t dim);

// mclust's name of a model ("VVV", ..., "E", "V").
const char* covariance_model_name(CovarianceModel model);

// The model for `dim`-dimensional data: in one dimension, E or V by the volume letter; E and V
// themselves with dim >= 2 throw std::invalid_argument.
CovarianceModel covariance_model_for_dim(CovarianceModel model, std::size_t dim);

// Whether the model's M-step iterates (VEI, VEE, EVE, VVE, VEV).
bool covariance_model_is_iterative(CovarianceModel model);

// Whether the model ties components together (a part Equal across components): its M-step is
// joint over k.
bool covariance_model_is_coupled(CovarianceModel model);

// The constrained M-step: given weighted scatter matrices W_k (about the component means) and
// counts n_k > 0, the covariances of the model minimising
//   sum_k [ n_k log det Sigma_k + tr(W_k Sigma_k^-1) ],
// the Gaussian M-step objective (a conjugate penalty a [tr(S Sigma_k^-1) + log det Sigma_k] is the
// same problem with W_k + 2 a S and n_k + 2 a). Closed forms where mclust has them (EII, VII,
// EEI, EVI, VVI, EEE, EEV, EVV, VVV, E, V). VEI, VEE and VEV alternate between the volumes and the
// shared shape (or shape and orientation), each step exact; EVE and VVE alternate between the
// shapes (and volumes) and one orientation, lowered by a sweep of plane rotations, each the exact
// (over-relaxed) minimiser in its plane (mclust 6 uses two majorise-minimise steps of Browne &
// McNicholas (2014) there, which need many more rounds; both reach the same minima). The iterative
// ones start from `start` (K covariances of the model: the iterate before, so that the objective
// never rises from there) and take at most 3 rounds, or, with `start` empty, from identity shapes
// (VEI, VEE, VEV) or the eigenvectors of sum_k W_k / n_k (EVE, VVE) for at most 1000 rounds; they
// stop when a round changes the objective by at most 1e-12 (1 + |objective|). max_rounds > 0
// caps the rounds instead (each round lowers the objective from `start`: a generalised M-step).
// Returns K d x d matrices, symmetric bit for bit. Where the problem has no optimum (an iterative model given a
// zero count or a non-finite scatter) every matrix is NaN; the closed forms then give what the
// arithmetic gives (0 / 0, a singular matrix). Throws std::invalid_argument on inconsistent shapes
// or a model that does not exist in the scatters' dimension (use covariance_model_for_dim).
std::vector<Eigen::MatrixXd> constrained_m_step(CovarianceModel model, const std::vector<Eigen::MatrixXd>& scatter,
                                                const Eigen::VectorXd& counts,
                                                const std::vector<Eigen::MatrixXd>& start = {}, int max_rounds = 0);

}  // namespace dfmr
