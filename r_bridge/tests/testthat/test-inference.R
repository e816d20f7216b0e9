# vcov(), confint(), summary(se = TRUE) and site_tests(): the numbers come from the Python package;
# these tests check R's conventions and the numbers against R's own distribution functions.

skip_if_not(dfmr_available(), "the dfmr Python package is not available")

faithful_fit <- dfmr_fit(faithful, G = 2, machines = 8, seed = 1)

test_that("confint() has R's layout, the issue's parameter names and intervals around the estimate", {
  ci <- confint(faithful_fit)
  expect_identical(colnames(ci), c("2.5 %", "97.5 %"))
  expect_identical(rownames(ci), c("pro1", "mean.eruptions.1", "mean.waiting.1", "mean.eruptions.2", "mean.waiting.2",
                                   "sigma.eruptions.eruptions.1", "sigma.eruptions.waiting.1",
                                   "sigma.waiting.waiting.1", "sigma.eruptions.eruptions.2",
                                   "sigma.eruptions.waiting.2", "sigma.waiting.waiting.2"))
  p <- faithful_fit$parameters
  estimate <- c(p$pro[1], p$mean, p$variance$sigma[, , 1][upper.tri(diag(2), diag = TRUE)],
                p$variance$sigma[, , 2][upper.tri(diag(2), diag = TRUE)])
  expect_true(all(ci[, 1] < estimate & estimate < ci[, 2]))
  expect_identical(colnames(confint(faithful_fit, level = 0.9)), c("5 %", "95 %"))
  expect_identical(confint(faithful_fit, parm = c("pro1", "mean.waiting.2")), ci[c(1, 5), ])
  expect_identical(confint(faithful_fit, parm = 2:3), ci[2:3, ])
  expect_error(confint(faithful_fit, parm = "mu1"), "unknown parameter\\(s\\) mu1")
  expect_error(confint(faithful_fit, level = 1.5), "level must be one number in \\(0, 1\\)")
  expect_error(confint(faithful_fit, type = "sandwich"), "should be one of")
})

test_that("the jackknife's natural-scale intervals are estimate -/+ t(m - 1) x standard error of vcov()", {
  V <- vcov(faithful_fit)
  expect_identical(dimnames(V), list(rownames(confint(faithful_fit)), rownames(confint(faithful_fit))))
  expect_equal(V, t(V), tolerance = 0)
  # positive semi-definite (of rank at most m - 1 = 7 < 11: a jackknife of 8 sites)
  expect_gt(min(eigen(V, symmetric = TRUE, only.values = TRUE)$values), -1e-12 * max(V))
  ci <- confint(faithful_fit, scale = "natural", level = 0.9)
  centre <- rowMeans(ci)
  # 8 sites: Student's t with 7 degrees of freedom, not the normal quantile
  expect_equal(unname(ci[, 2] - centre), unname(stats::qt(0.95, 7) * sqrt(diag(V))), tolerance = 1e-12)
})

test_that("proportions and variances are logit / log intervals that stay in range; the rest is symmetric", {
  set.seed(5)
  fit <- dfmr_fit(c(stats::rnorm(1800), stats::rnorm(200, 6, 0.5)), G = 2, machines = 5, seed = 2)
  level <- 0.99999  # 5 sites: t with 4 df, so wide enough for natural-scale intervals to cross 0 and 1
  natural <- confint(fit, scale = "natural", level = level)
  link <- confint(fit, level = level)
  expect_identical(rownames(link), c("pro1", "mean.1", "mean.2", "sigmasq.1", "sigmasq.2"))
  q <- stats::qt(1 - (1 - level) / 2, 4)
  se <- sqrt(diag(vcov(fit)))
  p <- fit$parameters
  expect_equal(unname(link["pro1", ]), stats::plogis(stats::qlogis(p$pro[1]) + c(-1, 1) * q * se[["pro1"]] /
                                                       (p$pro[1] * (1 - p$pro[1]))), tolerance = 1e-12)
  s2 <- p$variance$sigmasq
  expect_equal(unname(link[c("sigmasq.1", "sigmasq.2"), ]),
               exp(log(s2) + outer(unname(se[c("sigmasq.1", "sigmasq.2")]) / s2, c(-1, 1) * q)), tolerance = 1e-12)
  expect_identical(link[c("mean.1", "mean.2"), ], natural[c("mean.1", "mean.2"), ])
  expect_true(all(link[c("pro1", "sigmasq.1", "sigmasq.2"), 1] > 0) && link["pro1", 2] < 1)
  expect_true(natural["pro1", 1] < 0 || natural["pro1", 2] > 1)
  expect_true(any(natural[c("sigmasq.1", "sigmasq.2"), 1] < 0))
})

test_that("summary(se = TRUE) prints a printCoefmat table of estimates, standard errors, t values and p-values", {
  s <- summary(faithful_fit, se = TRUE)
  co <- s$coefficients
  expect_identical(colnames(co), c("Estimate", "Std. Error", "t value", "Pr(>|t|)"))
  expect_equal(co[, "Std. Error"], sqrt(diag(vcov(faithful_fit))), tolerance = 1e-12)
  means <- grepl("^mean", rownames(co))
  expect_equal(co[means, "t value"], co[means, "Estimate"] / co[means, "Std. Error"], tolerance = 1e-12)
  expect_equal(co[means, "Pr(>|t|)"], 2 * stats::pt(-abs(co[means, "t value"]), 7), tolerance = 1e-10)
  expect_true(all(is.na(co[c("pro1", "sigma.waiting.waiting.1"), "t value"])))
  printed <- capture.output(print(s))
  expect_true(any(grepl("Estimates with standard errors (site-level jackknife; t with 7 df)", printed, fixed = TRUE)))
  expect_true(any(grepl("^mean.waiting.1 +80", printed)))
  expect_true(any(grepl("Signif. codes", printed)))
  expect_null(summary(faithful_fit)$coefficients)
})

test_that("site_tests() flags the corrupted site, with p.adjust's adjustments and chi-squared p-values", {
  fits <- site_fits(corrupt = 2)
  res <- dfmr_aggregate(fits, G = 3)
  for (adjust in c("holm", "hochberg", "hommel", "bonferroni", "BH", "BY", "none")) {
    tests <- site_tests(res, adjust = adjust)
    expect_s3_class(tests, "dfmr_site_tests")
    expect_equal(tests$adj.p.value, stats::p.adjust(tests$p.value, adjust), tolerance = 1e-12)
    expect_identical(tests$flagged, tests$adj.p.value < 0.05)
  }
  expect_named(tests, c("site", "statistic", "df", "p.value", "adj.p.value", "flagged", "retained", "n"))
  expect_equal(tests$p.value, stats::pchisq(tests$statistic, tests$df, lower.tail = FALSE), tolerance = 1e-12)
  expect_identical(tests$df, rep(17L, 5))  # (3 - 1) + 3 x 2 + 3 x 3 free parameters
  expect_identical(tests$n, rep(800L, 5))
  holm <- site_tests(res)
  expect_identical(which(holm$flagged), 2L)
  expect_identical(holm$retained, c(TRUE, FALSE, TRUE, TRUE, TRUE))

  # The plot (helper-plots.R): a point per site at -log10 of its adjusted p-value (0 floored at the
  # smallest double), a dot if retained, a cross if not, red if flagged; the dashed line at alpha.
  calls <- drawn(plot(holm))
  sites <- calls[names(calls) == "C_plotXY"]  # the sites' points, then the legend's
  expect_equal(sites[[1]][[1]]$x, 1:5, ignore_attr = TRUE)
  holm_p <- stats::p.adjust(stats::pchisq(holm$statistic, 17, lower.tail = FALSE), "holm")
  expect_equal(sites[[1]][[1]]$y, -log10(pmax(holm_p, .Machine$double.xmin)), tolerance = 1e-10)
  expect_identical(sites[[1]][[3]], c(19, 4, 19, 19, 19))
  expect_identical(sites[[1]][[5]], c("black", "red", "black", "black", "black"))
  expect_identical(calls[names(calls) == "C_abline"][[1]][[3]], -log10(0.05))

  expect_error(site_tests(dfmr_aggregate(lapply(fits, `[[`, "parameters"), G = 3)), "needs the sites' sizes")
  expect_error(vcov(suppressWarnings(dfmr_aggregate(fits, G = 3, method = "mr"))),  # MR's default: the information
               "needs the sites' data, which only dfmr_fit\\(\\) results keep")
  expect_error(site_tests(res, adjust = "tukey"), "should be one of")
})

test_that("a modified object is refused rather than given intervals for parameters it does not have", {
  tampered <- faithful_fit
  tampered$parameters$mean[1, 1] <- tampered$parameters$mean[1, 1] + 1
  expect_error(confint(tampered), "not the aggregation of its local estimates")
})
