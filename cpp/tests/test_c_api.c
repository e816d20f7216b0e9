/* The C API from plain C: results against closed forms and hand-computed rules, and every error path. */
#include <dfmr/c_api.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

static const double kPi = 3.14159265358979323846;

/* N(x; mu, v) in one dimension. */
static double normal_pdf(double x, double mu, double v) { return exp(-0.5 * (x - mu) * (x - mu) / v) / sqrt(2.0 * kPi * v); }

/* Ten one-dimensional machines, two components each (weights 0.5); machines 8 and 9 send means
 * shifted by 50 (a Byzantine mean attack). */
enum { M = 10, K = 2, N = M * K };
static int64_t offsets[M + 1];
static double weights[N], means[N], covs[N];

static void make_input(void) {
  for (int i = 0; i <= M; ++i) offsets[i] = K * i;
  for (int i = 0; i < M; ++i) {
    const double jitter = 0.01 * (i % 5) - 0.02, shift = i >= 8 ? 50.0 : 0.0;
    weights[K * i] = weights[K * i + 1] = 0.5;
    means[K * i] = -2.0 + jitter + shift;
    means[K * i + 1] = 2.0 - jitter + shift;
    covs[K * i] = 1.0 + 0.01 * i;
    covs[K * i + 1] = 0.5 + 0.01 * i;
  }
}

/* ||f_i - f_j||^2 written out for one-dimensional two-component mixtures. */
static double l2_closed_form(int i, int j) {
  double s = 0.0;
  for (int a = 0; a < K; ++a)
    for (int b = 0; b < K; ++b) {
      const int ia = K * i + a, ib = K * i + b, ja = K * j + a, jb = K * j + b;
      s += weights[ia] * weights[ib] * normal_pdf(means[ia], means[ib], covs[ia] + covs[ib]);
      s += weights[ja] * weights[jb] * normal_pdf(means[ja], means[jb], covs[ja] + covs[jb]);
      s -= 2.0 * weights[ia] * weights[jb] * normal_pdf(means[ia], means[jb], covs[ia] + covs[jb]);
    }
  return sqrt(s > 0.0 ? s : 0.0);
}

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static void test_pairwise_matches_closed_form(double* D) {
  CHECK(dfmr_pairwise_l2(M, 1, offsets, weights, means, covs, 1, D) == DFMR_OK);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < M; ++j) CHECK(fabs(D[i * M + j] - l2_closed_form(i, j)) <= 1e-10 * (1.0 + l2_closed_form(i, j)));
}

/* DESIGN.md's centre and filter computed here from the distance matrix, compared with the core's. */
static void test_dfmr_applies_the_filter(const double* D) {
  double med[M], row[M], sorted[M];
  int centre = 0;
  for (int i = 0; i < M; ++i) {
    memcpy(sorted, D + i * M, sizeof sorted);
    qsort(sorted, M, sizeof(double), cmp_double);
    med[i] = 0.5 * (sorted[M / 2 - 1] + sorted[M / 2]);
    if (med[i] < med[centre]) centre = i;
  }
  memcpy(row, D + centre * M, sizeof row);
  memcpy(sorted, row, sizeof sorted);
  qsort(sorted, M, sizeof(double), cmp_double);
  const double kappa = pow((double)M, 0.1), cutoff = kappa * sorted[M / 2];

  dfmr_result* res = NULL;
  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, NULL, &res) == DFMR_OK);
  CHECK(res != NULL);
  if (!res) return;
  CHECK(dfmr_result_center(res) == centre);
  CHECK(fabs(dfmr_result_threshold(res) - kappa) <= 1e-15 * kappa);
  CHECK(fabs(dfmr_result_cutoff(res) - cutoff) <= 1e-12 * cutoff);
  size_t n_kept = 0;
  for (int i = 0; i < M; ++i) n_kept += row[i] <= cutoff;
  CHECK(dfmr_result_n_retained(res) == n_kept);
  CHECK(n_kept >= M / 2 + 1 && n_kept <= 8); /* at least the radius ball, no attacked machine */
  int64_t kept[M];
  dfmr_result_retained(res, kept);
  for (size_t t = 0; t < n_kept && t < M; ++t) CHECK(kept[t] < 8);
  double to_centre[M];
  CHECK(dfmr_result_distance_to_center(res, to_centre) == DFMR_OK);
  for (int i = 0; i < M; ++i) CHECK(fabs(to_centre[i] - row[i]) <= 1e-12 * (1.0 + row[i]));
  CHECK(dfmr_result_n_components(res) == K && dfmr_result_dim(res) == 1);
  double w[K], mu[K], v[K];
  dfmr_result_mixture(res, w, mu, v);
  CHECK(fabs(w[0] + w[1] - 1.0) <= 1e-12);
  /* The good machines' components pair up near -2 and +2: the aggregate sits there too. */
  const double lo = mu[0] < mu[1] ? mu[0] : mu[1], hi = mu[0] < mu[1] ? mu[1] : mu[0];
  CHECK(fabs(lo + 2.0) < 0.05 && fabs(hi - 2.0) < 0.05);
  CHECK(isfinite(dfmr_result_objective(res)) && dfmr_result_n_iter(res) >= 1 && dfmr_result_converged(res) == 1);
  dfmr_result_free(res);
}

static void test_mr_and_coat(void) {
  dfmr_result* res = NULL;
  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_MR, K, NULL, &res) == DFMR_OK);
  CHECK(dfmr_result_n_retained(res) == M && dfmr_result_center(res) == -1 && isnan(dfmr_result_radius(res)));
  double d[M];
  CHECK(dfmr_result_distance_to_center(res, d) == DFMR_INVALID_ARGUMENT);
  CHECK(strstr(dfmr_last_error(), "centre") != NULL);
  dfmr_result_free(res);

  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_COAT, 0, NULL, &res) == DFMR_OK);
  const int64_t c = dfmr_result_center(res);
  CHECK(dfmr_result_n_retained(res) == 1);
  double w[K], mu[K], v[K];
  dfmr_result_mixture(res, w, mu, v);
  CHECK(c >= 0 && c < 8 && mu[0] == means[K * c] && v[1] == covs[K * c + 1]);
  CHECK(isnan(dfmr_result_objective(res)));
  dfmr_result_free(res);
}

static void expect_error(int status, int expected, const char* fragment) {
  CHECK(status == expected);
  if (status != expected || strstr(dfmr_last_error(), fragment) == NULL)
    fprintf(stderr, "  status %d, message '%s' (wanted %d, '%s')\n", status, dfmr_last_error(), expected, fragment);
  CHECK(strstr(dfmr_last_error(), fragment) != NULL);
}

static void test_error_paths(void) {
  dfmr_result* res = (dfmr_result*)&res; /* must be reset to NULL on failure */
  dfmr_options opt;
  dfmr_options_default(&opt);

  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, NULL, NULL),
               DFMR_INVALID_ARGUMENT, "NULL");
  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, 7, K, NULL, &res), DFMR_INVALID_ARGUMENT, "method");
  CHECK(res == NULL);
  expect_error(dfmr_aggregate(0, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, NULL, &res),
               DFMR_INVALID_ARGUMENT, "at least one");
  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, 0, NULL, &res),
               DFMR_INVALID_ARGUMENT, "n_components");

  int64_t bad_offsets[M + 1];
  memcpy(bad_offsets, offsets, sizeof bad_offsets);
  bad_offsets[3] = bad_offsets[2];
  expect_error(dfmr_aggregate(M, 1, bad_offsets, weights, means, covs, DFMR_METHOD_MR, K, NULL, &res),
               DFMR_INVALID_ARGUMENT, "offsets");

  covs[5] = -1.0;
  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_MR, K, NULL, &res),
               DFMR_INVALID_ARGUMENT, "positive definite");
  covs[5] = 0.52;
  weights[4] = 0.7;
  expect_error(dfmr_pairwise_l2(M, 1, offsets, weights, means, covs, 1, (double[M * M]){0}), DFMR_INVALID_ARGUMENT,
               "sum to 1");
  weights[4] = 0.5;
  means[3] = NAN;
  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, NULL, &res),
               DFMR_INVALID_ARGUMENT, "finite");
  means[3] = 2.0;

  opt.threshold = 0.5;
  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, &opt, &res),
               DFMR_INVALID_ARGUMENT, "kappa");
  dfmr_options_default(&opt);
  opt.alpha = 1.0;
  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_TKB, K, &opt, &res),
               DFMR_INVALID_ARGUMENT, "alpha");
  dfmr_options_default(&opt);
  opt.center_rule = 9;
  expect_error(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, &opt, &res),
               DFMR_INVALID_ARGUMENT, "centre rule");
  dfmr_options_default(&opt);
  opt.n_threads = -1;
  expect_error(dfmr_pairwise_l2(M, 1, offsets, weights, means, covs, -1, (double[M * M]){0}), DFMR_INVALID_ARGUMENT,
               "n_threads");
  CHECK(res == NULL);

  /* A success clears the message of the previous failure. */
  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_MR, K, &opt, &res) == DFMR_INVALID_ARGUMENT);
  dfmr_options_default(&opt);
  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_MR, K, &opt, &res) == DFMR_OK);
  CHECK(strcmp(dfmr_last_error(), "") == 0);
  dfmr_result_free(res);
}

static void test_sampled_centre_with_full_sample_is_exact(void) {
  dfmr_options opt;
  dfmr_options_default(&opt);
  opt.center_rule = DFMR_CENTER_SAMPLED;
  opt.n_center_sample = M; /* the subset is every machine: the exact rule */
  opt.seed = 42;
  dfmr_result *sampled = NULL, *exact = NULL;
  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, &opt, &sampled) == DFMR_OK);
  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, NULL, &exact) == DFMR_OK);
  CHECK(dfmr_result_center(sampled) == dfmr_result_center(exact));
  CHECK(dfmr_result_cutoff(sampled) == dfmr_result_cutoff(exact));
  CHECK(dfmr_result_objective(sampled) == dfmr_result_objective(exact));
  dfmr_result_free(sampled);
  dfmr_result_free(exact);
}

/* Sizes: MR to one component is the moment match of the pool, whose weights are w_ik n_i / sum_j n_j:
 * computed here by hand. No sizes and equal sizes give dfmr_aggregate's result bit for bit; invalid
 * sizes are refused. */
static void test_sizes_weight_the_pool(void) {
  double n[M];
  for (int i = 0; i < M; ++i) n[i] = 100.0 * (i + 1);
  double total = 0.0, mean = 0.0, var = 0.0;
  for (int i = 0; i < M; ++i) total += n[i];
  for (int t = 0; t < N; ++t) mean += weights[t] * n[t / K] / total * means[t];
  for (int t = 0; t < N; ++t) var += weights[t] * n[t / K] / total * (covs[t] + (means[t] - mean) * (means[t] - mean));
  dfmr_result* res = NULL;
  CHECK(dfmr_aggregate_ex(M, 1, offsets, weights, means, covs, n, NULL, DFMR_METHOD_MR, 1, NULL, &res) == DFMR_OK);
  double w, mu, v;
  dfmr_result_mixture(res, &w, &mu, &v);
  CHECK(fabs(mu - mean) <= 1e-12 * (1.0 + fabs(mean)) && fabs(v - var) <= 1e-12 * var);
  dfmr_result_free(res);

  /* Equal sizes and NULL are dfmr_aggregate (K = 2, with DFMR's filter). */
  double equal[M], w2[2][K], mu2[2][K], v2[2][K];
  for (int i = 0; i < M; ++i) equal[i] = 37.0;
  dfmr_result *plain = NULL, *same = NULL, *none = NULL;
  CHECK(dfmr_aggregate(M, 1, offsets, weights, means, covs, DFMR_METHOD_DFMR, K, NULL, &plain) == DFMR_OK);
  CHECK(dfmr_aggregate_ex(M, 1, offsets, weights, means, covs, equal, NULL, DFMR_METHOD_DFMR, K, NULL, &same) == DFMR_OK);
  CHECK(dfmr_aggregate_ex(M, 1, offsets, weights, means, covs, NULL, NULL, DFMR_METHOD_DFMR, K, NULL, &none) == DFMR_OK);
  dfmr_result_mixture(plain, w2[0], mu2[0], v2[0]);
  dfmr_result_mixture(same, w2[1], mu2[1], v2[1]);
  CHECK(memcmp(w2[0], w2[1], sizeof w2[0]) == 0 && memcmp(mu2[0], mu2[1], sizeof mu2[0]) == 0 &&
        memcmp(v2[0], v2[1], sizeof v2[0]) == 0);
  CHECK(dfmr_result_objective(plain) == dfmr_result_objective(same));
  CHECK(dfmr_result_objective(plain) == dfmr_result_objective(none));
  dfmr_result_free(plain);
  dfmr_result_free(same);
  dfmr_result_free(none);

  n[3] = 0.5;
  expect_error(dfmr_aggregate_ex(M, 1, offsets, weights, means, covs, n, NULL, DFMR_METHOD_MR, K, NULL, &res),
               DFMR_INVALID_ARGUMENT, "n_samples[3]");
  n[3] = NAN;
  expect_error(dfmr_aggregate_ex(M, 1, offsets, weights, means, covs, n, NULL, DFMR_METHOD_MR, K, NULL, &res),
               DFMR_INVALID_ARGUMENT, "n_samples[3]");
  CHECK(res == NULL);
}

/* The covariance model by name: "tied" is E in one dimension (one variance for every component, the
 * pooled within-component variance of MR's moment match); NULL and "full" are dfmr_aggregate. On the
 * eight unattacked machines, where both models pair the components near -2 and near +2 alike. */
static void test_covariance_model_by_name(void) {
  dfmr_result *tied = NULL, *full = NULL, *plain = NULL;
  const size_t m = 8;
  CHECK(dfmr_aggregate_ex(m, 1, offsets, weights, means, covs, NULL, "tied", DFMR_METHOD_MR, K, NULL, &tied) == DFMR_OK);
  CHECK(dfmr_aggregate_ex(m, 1, offsets, weights, means, covs, NULL, "full", DFMR_METHOD_MR, K, NULL, &full) == DFMR_OK);
  CHECK(dfmr_aggregate(m, 1, offsets, weights, means, covs, DFMR_METHOD_MR, K, NULL, &plain) == DFMR_OK);
  double w[2][K], mu[2][K], v[3][K];
  dfmr_result_mixture(tied, w[0], mu[0], v[0]);
  dfmr_result_mixture(full, w[1], mu[1], v[1]);
  dfmr_result_mixture(plain, NULL, NULL, v[2]);
  CHECK(v[0][0] == v[0][1]);
  CHECK(fabs(mu[0][0] - mu[1][0]) <= 1e-12 && fabs(mu[0][1] - mu[1][1]) <= 1e-12);
  /* E's variance is the mass-weighted mean of the full model's matched variances. */
  CHECK(fabs(v[0][0] - (w[1][0] * v[1][0] + w[1][1] * v[1][1])) <= 1e-12 * v[0][0]);
  CHECK(memcmp(v[1], v[2], sizeof v[1]) == 0 && dfmr_result_objective(full) == dfmr_result_objective(plain));
  CHECK(dfmr_result_objective(tied) >= dfmr_result_objective(full));
  dfmr_result_free(tied);
  dfmr_result_free(full);
  dfmr_result_free(plain);
  dfmr_result* res = NULL;
  expect_error(dfmr_aggregate_ex(M, 1, offsets, weights, means, covs, NULL, "banana", DFMR_METHOD_MR, K, NULL, &res),
               DFMR_INVALID_ARGUMENT, "covariance model");
  CHECK(res == NULL);
}

int main(void) {
  static double D[M * M];
  make_input();
  test_pairwise_matches_closed_form(D);
  test_dfmr_applies_the_filter(D);
  test_mr_and_coat();
  test_error_paths();
  test_sampled_centre_with_full_sample_is_exact();
  test_sizes_weight_the_pool();
  test_covariance_model_by_name();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("C API: all checks passed\n");
  return failures ? 1 : 0;
}
