skip_if_not(dfmr_available(), "the dfmr Python package is not available")

test_that("dfmr_aggregate filters a corrupted site and recovers the truth", {
  fits <- site_fits(corrupt = 3)
  res <- dfmr_aggregate(fits, G = 3, method = "dfmr")
  expect_s3_class(res, "dfmr")
  expect_false(3L %in% res$retained)
  expect_identical(res$retained, c(1L, 2L, 4L, 5L))
  expect_true(res$distances[res$center, 3] > res$cutoff)
  k <- match_components(res$parameters$mean, truth$mean)
  expect_identical(sort(k), 1:3)
  expect_lt(max(abs(res$parameters$mean[, k] - truth$mean)), 0.15)
  expect_lt(max(abs(res$parameters$pro[k] - truth$pro)), 0.03)
  expect_lt(max(abs(res$parameters$variance$sigma[, , k] - truth$sigma)), 0.25)

  # plain MR is dragged away by the corrupted site (and, keeping it, warns that the sites' proportions
  # differ: its components match none of the others')
  mr <- suppressWarnings(dfmr_aggregate(fits, G = 3, method = "mr"))
  expect_gt(max(abs(mr$parameters$mean)), 5 + 8)

  # mclust's own functions take the result
  x <- draw(100, seed = 99)$x
  expect_equal(mclust::estep(data = x, modelName = "VVV", parameters = res$parameters)$z,
               predict(res, x)$z, tolerance = 1e-12, ignore_attr = TRUE)
  expect_error(logLik(res), "pass data =")
  expect_equal(as.numeric(logLik(res, data = x)),
               sum(log_mixture(x, res$parameters$pro, res$parameters$mean, res$parameters$variance$sigma)),
               tolerance = 1e-10)
})

test_that("parameter lists and Mclust fits mix, and dfmr_distances is the L2 matrix", {
  fits <- site_fits(corrupt = 2)
  fits[[4]] <- list(pro = fits[[4]]$parameters$pro, mean = fits[[4]]$parameters$mean,
                    variance = list(sigma = fits[[4]]$parameters$variance$sigma))
  names(fits) <- c("a", "b", "c", "d", "e")
  D <- dfmr_distances(fits)
  expect_identical(dimnames(D), list(names(fits), names(fits)))
  params <- lapply(fits, function(f) if (is.null(f$parameters)) f else f$parameters)
  for (i in 1:5) for (j in 1:5) {
    expect_equal(D[i, j], l2_distance(params[[i]], params[[j]]), tolerance = 1e-8)
  }
  res <- dfmr_aggregate(fits, G = 3, method = "coat")
  expect_identical(res$retained, res$center)
  expect_identical(res$sites, names(fits))
})

test_that("a site with an invalid sigma gives an R error naming the site", {
  fits <- site_fits()
  broken <- fits[[4]]$parameters
  broken$variance <- list(sigma = broken$variance$sigma)
  broken$variance$sigma[, , 2] <- matrix(c(1, 2, 2, 1), 2)
  fits[[4]] <- broken
  err <- tryCatch(dfmr_aggregate(fits, G = 3), error = function(e) e)
  expect_s3_class(err, "dfmr_python_error")
  expect_match(conditionMessage(err), "^site 4: covariances")
  expect_match(conditionMessage(err), "positive definite")

  fits[[4]] <- list(pro = c(0.5, NA), mean = matrix(0, 2, 2), variance = list(sigma = array(diag(2), c(2, 2, 2))))
  expect_error(dfmr_aggregate(fits, G = 3), "site 4: pro and mean must be finite")
  expect_error(dfmr_aggregate(list(fits[[1]], "oops"), G = 3), "site 2: expected an Mclust fit")
})

test_that("the default method is robust_dfmr, calibrated by the sites' Mclust sizes", {
  fits <- site_fits(corrupt = 2)
  res <- dfmr_aggregate(fits, G = 3)
  expect_identical(res$method, "robust_dfmr")
  expect_identical(res$retained, c(1L, 3L, 4L, 5L))
  k <- match_components(res$parameters$mean, truth$mean)
  expect_lt(max(abs(res$parameters$mean[, k] - truth$mean)), 0.15)
  # The sites' sizes (mclust's $n = 800 each) reached the tests; bare parameter lists carry none,
  # so equal sizes are assumed and said.
  expect_true(res$screening$n_samples_known)
  unsized <- dfmr_aggregate(lapply(fits, function(f) f$parameters), G = 3)
  expect_false(unsized$screening$n_samples_known)
  expect_identical(unsized$retained, res$retained)
  expect_error(plot(res, what = "distances"), "computes no L2 distances")
})

test_that("a robust_dfmr aggregate carries its screening decisions and summary() prints them", {
  fits <- site_fits(corrupt = 4)
  res <- dfmr_aggregate(fits, G = 3)
  dec <- res$screening$decisions
  expect_true(all(dec$site == 4L))
  expect_true(all(dec$statistic > dec$cutoff))
  expect_identical(res$screening$components_kept, c(3L, 3L, 3L, 0L, 3L))
  expect_true(res$screening$n_samples_known)
  printed <- capture.output(print(summary(res)))
  expect_true(any(grepl("Screening decisions (site sizes known)", printed, fixed = TRUE)))
  expect_true(any(grepl(dec$rule[1], printed, fixed = TRUE)))
  # the other methods have none
  expect_null(dfmr_aggregate(fits, G = 3, method = "dfmr")$screening)
})

test_that("the sites' Mclust sizes weight the pool: a site of twice the rows counts as two copies of it", {
  # mclust's $n is the server's size of each site (authoritative): MR pools site i's components with
  # weight w_ik n_i / sum_j n_j, so doubling a site's n is the same as listing that site twice.
  fits <- honest_fits[1:3]
  doubled <- fits
  doubled[[2]]$n <- 2 * fits[[2]]$n
  res <- dfmr_aggregate(doubled, G = 3, method = "mr")
  twice <- dfmr_aggregate(fits[c(1, 2, 2, 3)], G = 3, method = "mr")
  expect_identical(res$sizes, c(800L, 1600L, 800L))
  a <- match_components(res$parameters$mean, truth$mean)
  b <- match_components(twice$parameters$mean, truth$mean)
  expect_equal(res$parameters$pro[a], twice$parameters$pro[b], tolerance = 1e-8)
  expect_equal(res$parameters$mean[, a], twice$parameters$mean[, b], tolerance = 1e-8)
  expect_equal(res$parameters$variance$sigma[, , a], twice$parameters$variance$sigma[, , b], tolerance = 1e-8)
  # and it differs from the unweighted aggregate (the test can fail)
  plain <- dfmr_aggregate(lapply(doubled, function(f) f$parameters), G = 3, method = "mr")
  expect_gt(max(abs(plain$parameters$mean[, match_components(plain$parameters$mean, truth$mean)] -
                    res$parameters$mean[, a])), 1e-4)
})
