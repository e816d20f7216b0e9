skip_if_not(dfmr_available(), "the dfmr Python package is not available")

test_that("dfmr_fit on a 2-D matrix recovers the mixture, and predict, summary, logLik, BIC and plot work", {
  data <- draw(3000)
  fit <- dfmr_fit(data$x, G = 3, machines = 5, seed = 1)
  expect_s3_class(fit, "dfmr")
  expect_identical(fit$method, "robust_dfmr")
  expect_identical(fit$modelName, "VVV")
  expect_identical(length(fit$sites), 5L)
  k <- match_components(fit$parameters$mean, truth$mean)
  expect_identical(sort(k), 1:3)
  expect_lt(max(abs(fit$parameters$mean[, k] - truth$mean)), 0.15)
  expect_lt(max(abs(fit$parameters$pro[k] - truth$pro)), 0.03)
  expect_lt(max(abs(fit$parameters$variance$sigma[, , k] - truth$sigma)), 0.2)

  pred <- predict(fit, data$x[1:200, ])
  expect_named(pred, c("classification", "z"))
  expect_equal(rowSums(pred$z), rep(1, 200), tolerance = 1e-12)
  expect_identical(pred$classification, max.col(pred$z, ties.method = "first"))
  expect_gt(mean(k[data$labels[1:200]] == pred$classification), 0.97)

  ll <- logLik(fit)
  p <- fit$parameters
  expect_equal(as.numeric(ll), sum(log_mixture(data$x, p$pro, p$mean, p$variance$sigma)), tolerance = 1e-10)
  df <- (3 - 1) + 3 * 2 + 3 * 3
  expect_identical(attr(ll, "df"), df)
  expect_equal(BIC(fit), 2 * as.numeric(ll) - df * log(3000), tolerance = 1e-12)
  expect_equal(mclust::dens(data = data$x[1:50, ], modelName = "VVV", parameters = fit$parameters),
               exp(log_mixture(data$x[1:50, ], p$pro, p$mean, p$variance$sigma)), tolerance = 1e-10)

  s <- summary(fit)
  expect_s3_class(s, "summary.dfmr")
  expect_equal(s$loglik, as.numeric(ll))
  expect_identical(s$table$retained, seq_len(5) %in% fit$retained)
  expect_output(print(s), "screened DFMR")
  expect_output(print(fit), "Retained")

  # What plot() drew (helper-plots.R): every points() / lines() call. robust_dfmr computes no L2
  # distance matrix, so the default plot is the classification: the data coloured by class, then
  # each component's ellipse and mean.
  calls <- drawn(plot(fit))
  xy_calls <- calls[names(calls) == "C_plotXY"]
  expect_equal(cbind(xy_calls[[1]][[1]]$x, xy_calls[[1]][[1]]$y), data$x, tolerance = 0, ignore_attr = TRUE)
  comp <- sapply(1:3, function(k) log(p$pro[k]) + log_normal(data$x, p$mean[, k], p$variance$sigma[, , k]))
  expect_identical(as.integer(xy_calls[[1]][[5]]), max.col(comp, ties.method = "first"))
  centres <- Filter(function(a) identical(a[[2]], "p"), xy_calls[-1])
  expect_equal(sapply(centres, function(a) c(a[[1]]$x, a[[1]]$y)), p$mean, tolerance = 1e-12, ignore_attr = TRUE)
  for (k in 1:3) {  # component k's ellipse (drawn in colour k): the points at Mahalanobis distance 1
    arcs <- Filter(function(a) identical(a[[2]], "l") && identical(a[[5]], k), xy_calls)
    xy <- do.call(rbind, lapply(arcs, function(a) cbind(a[[1]]$x, a[[1]]$y)))
    expect_gt(nrow(xy), 20)
    expect_equal(stats::mahalanobis(xy, p$mean[, k], p$variance$sigma[, , k]), rep(1, nrow(xy)), tolerance = 1e-10)
  }
  png_file <- tempfile(fileext = ".png")  # and the explicit choice draws on a file device
  grDevices::png(png_file)
  expect_identical(plot(fit, what = "classification"), fit)
  grDevices::dev.off()
  expect_gt(file.size(png_file), 1000)
})

test_that("machines can name every row's site, and data frames and vectors are accepted", {
  data <- draw(1200, seed = 2)
  site <- factor(rep(c("lyon", "oslo", "rome", "kyiv"), length.out = 1200))
  fit <- dfmr_fit(as.data.frame(data$x), G = 3, machines = site, method = "mr", seed = 3)
  expect_identical(fit$sites, levels(site))
  expect_identical(fit$method, "mr")
  expect_null(fit$center)
  expect_identical(fit$retained, 1:4)

  uni <- dfmr_fit(c(stats::rnorm(500), stats::rnorm(500, 8)), G = 2, machines = 4, seed = 1)
  expect_identical(uni$modelName, "V")
  expect_equal(sort(uni$parameters$mean), c(0, 8), tolerance = 0.05)
  expect_length(uni$parameters$variance$sigmasq, 2)
  x <- c(-1, 0, 4, 8)
  expect_equal(mclust::dens(data = x, modelName = "V", parameters = uni$parameters),
               rowSums(sapply(1:2, function(k) uni$parameters$pro[k] *
                 stats::dnorm(x, uni$parameters$mean[k], sqrt(uni$parameters$variance$sigmasq[k])))),
               tolerance = 1e-12)
})

test_that("the default method is Python's and Python errors surface as R errors with the Python message", {
  data <- draw(400, seed = 4)
  expect_identical(dfmr_fit(data$x, G = 2, machines = 2, seed = 1)$method,
                   dfmr:::.python("defaults")$method)
  err <- tryCatch(dfmr_fit(data$x, G = 2, machines = 500), error = function(e) e)
  expect_s3_class(err, "dfmr_python_error")
  expect_match(conditionMessage(err), "n_machines = 500 exceeds the number of rows")
  expect_null(conditionCall(err))
  expect_error(dfmr_fit(data$x, G = 2, method = "median"), "should be one of")
  # kappa belongs to DFMR: with the default method it is refused, not silently ignored
  expect_error(dfmr_fit(data$x, G = 2, machines = 2, threshold = 2), "applies to aggregator='dfmr' only")
  expect_identical(dfmr_fit(data$x, G = 2, machines = 2, method = "dfmr", threshold = 2, seed = 1)$threshold, 2)
  site <- rep(c("lyon", "oslo", "rome"), c(200, 198, 2))
  expect_error(dfmr_fit(data$x, G = 2, machines = site), "^site 3 \\('rome'\\) has 2 rows")
})

test_that("a robust_dfmr fit says where the sizes came from and which sites share a vote", {
  fit <- dfmr_fit(draw(1600)$x, G = 3, machines = 4, seed = 1)
  s <- fit$screening
  # dfmr_fit split the rows itself: the sizes are the server's, nothing is calibrated from the votes.
  expect_identical(s$size_source, "server")
  expect_true(s$n_samples_known)
  expect_true(is.na(s$calibrated_n))
  expect_identical(s$votes, stats::setNames(rep(1, 4), fit$sites))
  expect_identical(s$vote_groups, list())
  # Bare parameter lists carry no size; a site sending a copy of site 2 shares its vote.
  fits <- lapply(honest_fits, function(f) f$parameters)
  fits[[6]] <- fits[[2]]
  res <- dfmr_aggregate(fits, G = 3)
  s <- res$screening
  expect_identical(s$size_source, "unknown")
  expect_false(s$n_samples_known)
  expect_gt(s$calibrated_n, 0)
  expect_identical(s$vote_groups, list(c(2L, 6L)))
  expect_equal(unname(s$votes), c(1, 0.5, 1, 1, 1, 0.5))
})

