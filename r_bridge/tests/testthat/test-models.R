skip_if_not(dfmr_available(), "the dfmr Python package is not available")

# Three sites of the same two-cluster population (2-D: mclust's classification plot is the 2-D one).
model_sites <- lapply(1:3, function(i) {
  set.seed(40 + i)
  rbind(matrix(stats::rnorm(300), ncol = 2), sweep(matrix(stats::rnorm(300), ncol = 2) %*% diag(c(1, 2)), 2, 4, "+"))
})

# The ellipses a plot drew (helper-plots.R): the coordinates of every lines() call.
ellipses <- function(calls) {
  xy <- Filter(function(a) identical(a[[2]], "l"), calls[names(calls) == "C_plotXY"])
  lapply(xy, function(a) cbind(a[[1]]$x, a[[1]]$y))
}

test_that("a result of each covariance model is that model's Mclust object to dens, estep, predict, summary and plot", {
  # COAT returns the centre site's own estimate: after the trip through Python and back, the result
  # must be that site's Mclust fit to mclust's functions, which read the model's own variance fields
  # (sigmasq, scale, shape, orientation, cholsigma, ...). One component gives mclust's XII/XXI/XXX.
  cases <- list(c("EII", 2), c("VEI", 2), c("EVI", 2), c("EEE", 2), c("EVE", 2), c("VEV", 2), c("VVV", 2),
                c("VII", 1), c("EEI", 1), c("EEV", 1))
  for (case in cases) {
    G <- as.integer(case[2])
    fits <- lapply(model_sites, mclust::Mclust, G = G, modelNames = case[1], verbose = FALSE)
    res <- dfmr_aggregate(fits, G = G, method = "coat")
    ref <- fits[[res$center]]
    x <- ref$data
    label <- paste(case, collapse = " G = ")
    expect_identical(res$modelName, ref$modelName, label = label)
    expect_identical(res$df, ref$df, label = label)
    expect_identical(names(res$parameters$variance), names(ref$parameters$variance), label = label)
    expect_equal(res$parameters$variance$sigma, ref$parameters$variance$sigma, tolerance = 1e-12,
                 ignore_attr = TRUE, label = label)
    expect_equal(mclust::dens(data = x, modelName = res$modelName, parameters = res$parameters),
                 mclust::dens(data = x, modelName = ref$modelName, parameters = ref$parameters),
                 tolerance = 1e-12, label = label)
    if (G > 1L) {  # mclust has no estep for its single-component models
      expect_equal(mclust::estep(data = x, modelName = res$modelName, parameters = res$parameters)$z,
                   mclust::estep(data = x, modelName = ref$modelName, parameters = ref$parameters)$z,
                   tolerance = 1e-12, label = label)
    }
    ours <- predict(res, x)
    theirs <- predict(ref, x)
    expect_identical(ours$classification, theirs$classification, label = label)
    expect_equal(ours$z, theirs$z, tolerance = 1e-12, label = label)
    # mclust's logLik and bic of the site's fit at its parameters (its stored loglik is EM's last E-step's)
    unfitted <- ref
    unfitted$loglik <- NULL
    ll <- logLik(unfitted)
    s <- summary(res, data = x)
    expect_equal(c(s$loglik, s$df, s$bic),
                 c(ll, attr(ll, "df"), mclust::bic(ref$modelName, ll, ref$n, ref$d, ref$G)), tolerance = 1e-12,
                 ignore_attr = TRUE, label = label)
    expect_equal(ellipses(drawn(plot(res, what = "classification", data = x))),
                 ellipses(drawn(plot(ref, what = "classification"))), tolerance = 1e-12, label = label)
  }
})

test_that("univariate fits keep mclust's E and V models", {
  for (model in c("E", "V")) {
    fits <- lapply(model_sites, function(x) mclust::Mclust(x[, 2], G = 2, modelNames = model, verbose = FALSE))
    res <- dfmr_aggregate(fits, G = 2, method = "coat")
    ref <- fits[[res$center]]
    expect_identical(res$modelName, model)
    expect_identical(res$parameters$variance[c("modelName", "sigmasq")], ref$parameters$variance[c("modelName", "sigmasq")],
                     ignore_attr = TRUE)
    expect_equal(predict(res, ref$data)$z, predict(ref)$z, tolerance = 1e-12, ignore_attr = TRUE)
  }
})

test_that("dfmr_fit(modelNames =) fits every site in that model", {
  x <- do.call(rbind, model_sites)
  fit <- dfmr_fit(x, G = 2, machines = 3, modelNames = "EEE", method = "coat", seed = 1)
  expect_identical(fit$modelName, "EEE")
  expect_identical(vapply(fit$local, function(p) p$variance$modelName, ""), rep("EEE", 3))
  # EEE: one covariance for both components, written as mclust writes it
  expect_equal(fit$parameters$variance$sigma[, , 1], fit$parameters$variance$sigma[, , 2], tolerance = 1e-12)
  expect_equal(fit$parameters$variance$Sigma, fit$parameters$variance$sigma[, , 1], tolerance = 1e-12)
  expect_equal(crossprod(fit$parameters$variance$cholSigma), fit$parameters$variance$Sigma, tolerance = 1e-12)
  expect_identical(fit$df, mclust::nMclustParams("EEE", 2, 2))
  # the reduction keeps the model too (its M-step is the model's)
  reduced <- dfmr_fit(x, G = 2, machines = 3, modelNames = "EEE", method = "mr", seed = 1)
  expect_identical(reduced$modelName, "EEE")
  expect_equal(reduced$parameters$variance$sigma[, , 1], reduced$parameters$variance$sigma[, , 2], tolerance = 1e-10)
  expect_error(dfmr_fit(x, G = 2, modelNames = "ABC"), "covariance_type")
  expect_error(dfmr_aggregate(fit$local, G = 2, modelNames = c("EEE", "VVV")), "one covariance model")
})

test_that("dfmr_fit over a grid of G and models chooses as mclustBIC on the pooled data, with an mclustBIC object", {
  x <- do.call(rbind, model_sites)
  fit <- dfmr_fit(x, G = 1:3, modelNames = c("EII", "VVI"), machines = 4, seed = 1)
  # mclust's EM run to a tight tolerance: at its default (1e-5 relative) an over-fitted candidate (EII, 3) stops
  # 0.05 log-likelihood units below its maximum, where the sites' plain-MLE fits aggregate closer to it.
  ref <- mclust::mclustBIC(x, G = 1:3, modelNames = c("EII", "VVI"), verbose = FALSE,
                           control = mclust::emControl(tol = c(1e-10, sqrt(.Machine$double.eps))))
  best <- names(summary(ref))[1]  # "model,G"
  expect_identical(paste(fit$modelName, fit$G, sep = ","), best)
  expect_s3_class(fit$BIC, "mclustBIC")
  expect_identical(dimnames(fit$BIC), dimnames(ref)[1:2])
  expect_identical(names(summary(fit$BIC))[1], best)
  # mclust's sign, and each candidate's value is the pooled log-likelihood of the distributed estimate:
  # at most mclust's (its maximum on the same data), and close to it
  expect_true(all(fit$BIC <= ref + 1e-6 * abs(ref)))
  expect_lt(max(abs(fit$BIC - ref) / abs(ref)), 2e-3)
  expect_equal(fit$BIC[as.character(fit$G), fit$modelName], BIC(fit), tolerance = 1e-8)
  s <- capture.output(print(summary(fit)))
  expect_true(any(grepl("Best BIC values", s)))
  calls <- drawn(plot(fit, what = "BIC"))  # mclust's BIC plot: one line per model
  lines <- Filter(function(a) identical(a[[2]], "b") || identical(a[[2]], "l"), calls[names(calls) == "C_plotXY"])
  expect_gte(length(lines), 2L)
  expect_error(plot(dfmr_fit(x, G = 2, machines = 3, seed = 1), what = "BIC"), "chose no model")
})

test_that("sites that chose different models are aggregated into the requested model", {
  sites4 <- c(model_sites, list(model_sites[[1]][nrow(model_sites[[1]]):1, ]))
  fits <- Map(function(x, m) mclust::Mclust(x, G = 2, modelNames = m, verbose = FALSE), sites4,
              c("EII", "VVV", "EEE", "VVI"))
  res <- dfmr_aggregate(fits, G = 2, modelNames = "VVI", method = "mr")
  ref <- mclust::Mclust(model_sites[[1]], G = 2, modelNames = "VVI", verbose = FALSE)
  expect_identical(res$modelName, "VVI")
  expect_identical(names(res$parameters$variance), names(ref$parameters$variance))
  # VVI's M-step keeps the diagonal of the moment-matched covariances: the full aggregate's diagonal
  full <- dfmr_aggregate(fits, G = 2, modelNames = "VVV", method = "mr")
  k <- match_components(full$parameters$mean, res$parameters$mean)
  expect_equal(full$parameters$mean[, k], res$parameters$mean, tolerance = 1e-8, ignore_attr = TRUE)
  for (j in 1:2) {
    expect_equal(res$parameters$variance$sigma[, , j], diag(diag(full$parameters$variance$sigma[, , k[j]])),
                 tolerance = 1e-8, ignore_attr = TRUE)
  }
  # without modelNames: no model has a majority of the sites, so the aggregate is unconstrained
  expect_identical(dfmr_aggregate(fits, G = 2, method = "mr")$modelName, "VVV")
})
