skip_if_not(dfmr_available(), "the dfmr Python package is not available")

# Four sites sharing truth's components, each with its own mixing proportions (its own case mix).
site_pro <- rbind(c(0.6, 0.2, 0.2), c(0.2, 0.6, 0.2), c(0.2, 0.2, 0.6), c(0.34, 0.33, 0.33))
case_mix <- lapply(1:4, function(i) draw(600, mix = list(pro = site_pro[i, ], mean = truth$mean, sigma = truth$sigma),
                                         seed = 70 + i)$x)

test_that("site_weights = 'free' keeps every site's own proportions, aligned to the aggregate's components", {
  fits <- lapply(case_mix, mclust::Mclust, G = 3, modelNames = "VVV", verbose = FALSE)
  names(fits) <- paste0("s", 1:4)
  res <- dfmr_aggregate(fits, G = 3, method = "mr", site_weights = "free")
  expect_identical(dimnames(res$site_weights), list(names(fits), as.character(1:3)))
  for (i in 1:4) {
    # the site's component nearest to each output component carries that component's proportion
    own <- fits[[i]]$parameters
    k <- match_components(own$mean, res$parameters$mean)
    expect_equal(unname(res$site_weights[i, ]), own$pro[k], tolerance = 1e-6)
  }
  # the global proportions: an average of the sites' (equal sizes), near the mean case mix
  k <- match_components(res$parameters$mean, truth$mean)
  expect_lt(max(abs(res$parameters$pro[k] - colMeans(site_pro))), 0.05)
  # the sites clearly differ: the homogeneity test says so, and summary() prints both
  expect_lt(res$site_homogeneity$p.value, 1e-6)
  expect_identical(res$site_homogeneity$sites$site, names(fits))
  printed <- capture.output(print(summary(res)))
  expect_true(any(grepl("Sites' own mixing probabilities", printed, fixed = TRUE)))
  expect_true(any(grepl("Equal proportions across sites", printed, fixed = TRUE)))
  # the shared model has no per-site proportions, and says (an R warning) that they differ here
  expect_warning(shared <- dfmr_aggregate(fits, G = 3, method = "mr"), "site_weights='free'")
  expect_null(shared$site_weights)
})

test_that("dfmr_fit(site_weights = 'free') estimates each site's case mix from its rows", {
  x <- do.call(rbind, case_mix)
  site <- rep(c("a", "b", "c", "d"), each = 600)
  fit <- dfmr_fit(x, G = 3, machines = site, method = "mr", site_weights = "free", seed = 1)
  k <- match_components(fit$parameters$mean, truth$mean)
  expect_identical(rownames(fit$site_weights), c("a", "b", "c", "d"))
  expect_lt(max(abs(fit$site_weights[, k] - site_pro)), 0.06)
  expect_error(dfmr_fit(x, G = 3, machines = site, site_weights = "own"), "should be one of")
})
