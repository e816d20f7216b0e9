/* dfmr C API: the whole aggregation method for any language that can call C.
 *
 * Plain arrays in and out; every function returns an error code (DFMR_OK = 0 on success) and
 * never lets a C++ exception escape. After a failure, dfmr_last_error() returns a message
 * describing it (per thread; valid until the next dfmr call on that thread).
 *
 * Local estimates cross the boundary packed: m mixtures of dimension d with N components in
 * all; weights[N], means[N * d], covariances[N * d * d] (row-major), and offsets[m + 1], mixture
 * i owning components offsets[i] .. offsets[i + 1] - 1 (offsets[0] = 0, offsets[m] = N).
 */
#ifndef DFMR_C_API_H
#define DFMR_C_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dfmr_status {
  DFMR_OK = 0,
  DFMR_INVALID_ARGUMENT = 1, /* malformed input: shapes, non-finite values, non-SPD covariances, options */
  DFMR_NUMERICAL_ERROR = 2,  /* the computation failed numerically (e.g. a non-finite cost) */
  DFMR_OUT_OF_MEMORY = 3,
  DFMR_INTERNAL_ERROR = 4
};

enum dfmr_method { DFMR_METHOD_DFMR = 0, DFMR_METHOD_MR = 1, DFMR_METHOD_COAT = 2, DFMR_METHOD_TKB = 3 };
enum dfmr_center_rule { DFMR_CENTER_EXACT = 0, DFMR_CENTER_SAMPLED = 1 };

/* Options of dfmr_aggregate; fill with dfmr_options_default() then change fields. Meanings as in
 * dfmr::AggregateOptions (cpp/include/dfmr/aggregate.hpp). */
typedef struct dfmr_options {
  double threshold; /* kappa >= 1; 0: m^0.1 */
  double alpha;     /* TKB trimming level in [0, 1) */
  int max_iter;
  double tol;
  int n_starts; /* 0: all */
  int center_rule;
  int n_center_sample;
  uint64_t seed;
  int n_threads; /* 0: all hardware threads */
} dfmr_options;

typedef struct dfmr_result dfmr_result; /* opaque; free with dfmr_result_free */

void dfmr_options_default(dfmr_options* options);

/* Message of the last failure on this thread ("" if none). */
const char* dfmr_last_error(void);

/* out[m * m], row-major: L2 distances between the m mixtures. */
int dfmr_pairwise_l2(size_t m, size_t d, const int64_t* offsets, const double* weights, const double* means,
                     const double* covariances, int n_threads, double* out);

/* Aggregate by `method` (enum dfmr_method) to n_components components (ignored by COAT); options
 * may be NULL (defaults). On success *result owns the outcome. */
int dfmr_aggregate(size_t m, size_t d, const int64_t* offsets, const double* weights, const double* means,
                   const double* covariances, int method, int n_components, const dfmr_options* options,
                   dfmr_result** result);

/* dfmr_aggregate with the sites' sample sizes and a covariance model.
 * n_samples[m]: one size per machine (finite, >= 1), or NULL for equal sizes. The retained machines R
 * enter the pool with weights w_ik n_i / sum_{j in R} n_j; equal sizes give exactly dfmr_aggregate's
 * result. Pass only sizes the caller knows: a size that an estimate claims about itself is
 * attacker-controlled.
 * covariance_model: the model of the aggregate's components, by name: "full", "tied", "diag",
 * "spherical" or an mclust model name ("VVV", "EEE", "VVI", "VII", "EII", ...; in one dimension
 * E or V by the volume letter, see dfmr::parse_covariance_model), or NULL for full (then, with
 * NULL sizes, it is dfmr_aggregate). */
int dfmr_aggregate_ex(size_t m, size_t d, const int64_t* offsets, const double* weights, const double* means,
                      const double* covariances, const double* n_samples, const char* covariance_model, int method,
                      int n_components, const dfmr_options* options, dfmr_result** result);

void dfmr_result_free(dfmr_result* result);

/* Accessors (result must be non-NULL). Arrays are copied into caller-provided buffers. */
size_t dfmr_result_n_components(const dfmr_result* result);
size_t dfmr_result_dim(const dfmr_result* result);
/* weights[K], means[K * d], covariances[K * d * d]; any pointer may be NULL to skip it. */
void dfmr_result_mixture(const dfmr_result* result, double* weights, double* means, double* covariances);
size_t dfmr_result_n_retained(const dfmr_result* result);
void dfmr_result_retained(const dfmr_result* result, int64_t* retained);
/* Centre machine, or -1 (MR, TKB). */
int64_t dfmr_result_center(const dfmr_result* result);
/* Filter values as distances (unscaled); NaN when there is no filter (MR, TKB). */
double dfmr_result_radius(const dfmr_result* result);
double dfmr_result_threshold(const dfmr_result* result);
double dfmr_result_cutoff(const dfmr_result* result);
/* distances[m] from the centre, unscaled; returns DFMR_INVALID_ARGUMENT when there is no centre. */
int dfmr_result_distance_to_center(const dfmr_result* result, double* distances);
double dfmr_result_objective(const dfmr_result* result); /* NaN for COAT */
int dfmr_result_n_iter(const dfmr_result* result);
int dfmr_result_converged(const dfmr_result* result);

#ifdef __cplusplus
}
#endif

#endif /* DFMR_C_API_H */
