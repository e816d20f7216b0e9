# Coverage of R's confint() on dfmr_fit() results (issue 23), run from a plain R session:
#   Rscript tests/benchmarks/bench_r_coverage.R [repetitions] [rows per site] [sites]
# (defaults 200, 200, 10). Each repetition draws 0.4 N(-2, 1) + 0.6 N(2, 1.5^2) on every site, fits
# with the default method (robust_dfmr, seed = repetition) and takes the 95% intervals of confint()
# (their default: site-level jackknife, t quantiles, logit / log scale for proportions / variances).
# The truth's components are matched to the fit's by their means. Prints the coverage of every
# parameter and of all of them, with the binomial standard error; asserts nothing.
args <- as.numeric(commandArgs(trailingOnly = TRUE))
reps <- if (length(args) >= 1) args[1] else 200
rows <- if (length(args) >= 2) args[2] else 200
sites <- if (length(args) >= 3) args[3] else 10

suppressPackageStartupMessages(library(dfmr))
pro <- c(0.4, 0.6)
mu <- c(-2, 2)
s2 <- c(1, 1.5^2)
started <- Sys.time()
hits <- t(vapply(seq_len(reps), function(r) {
  set.seed(r)
  n <- rows * sites
  first <- stats::runif(n) < pro[1]
  x <- ifelse(first, stats::rnorm(n, mu[1], sqrt(s2[1])), stats::rnorm(n, mu[2], sqrt(s2[2])))
  fit <- dfmr_fit(x, G = 2, machines = sites, seed = r)
  k <- rank(fit$parameters$mean)  # the true component behind each fitted one
  truth <- c(pro[k[1]], mu[k], s2[k])
  ci <- confint(fit)
  ci[, 1] <= truth & truth <= ci[, 2]
}, logical(5)))
colnames(hits) <- c("pro1", "mean.1", "mean.2", "sigmasq.1", "sigmasq.2")
coverage <- colMeans(hits)
cat(sprintf("confint() coverage at 95%%: %d repetitions, %d sites of %d rows, %.0f s\n", reps, sites, rows,
            as.numeric(difftime(Sys.time(), started, units = "secs"))))
print(round(rbind(coverage = coverage, se = sqrt(coverage * (1 - coverage) / reps)), 3))
cat(sprintf("all parameters: %.3f\n", mean(hits)))
