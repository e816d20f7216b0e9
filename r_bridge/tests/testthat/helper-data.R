# mclust::Mclust() finds its helpers on the search path, so the tests attach mclust as its users do.
suppressPackageStartupMessages(library(mclust))

# A known 3-component mixture in 2-D and independent density formulas (no dfmr, no mclust).
truth <- list(
  pro = c(0.3, 0.3, 0.4),
  mean = cbind(c(0, 0), c(6, 0), c(0, 6)),
  sigma = array(c(1, 0.3, 0.3, 1,  1.5, 0, 0, 0.5,  0.7, -0.2, -0.2, 1.2), c(2, 2, 3))
)

draw <- function(n, mix = truth, seed = 1) {
  set.seed(seed)
  G <- length(mix$pro)
  labels <- sample.int(G, n, replace = TRUE, prob = mix$pro)
  x <- matrix(0, n, nrow(mix$mean))
  for (k in seq_len(G)) {
    rows <- labels == k
    z <- matrix(stats::rnorm(sum(rows) * nrow(mix$mean)), sum(rows))
    x[rows, ] <- sweep(z %*% chol(mix$sigma[, , k]), 2, mix$mean[, k], "+")
  }
  list(x = x, labels = labels)
}

# log N(x; mu, S) for the rows of x, from the eigen-decomposition of S.
log_normal <- function(x, mu, S) {
  e <- eigen(S, symmetric = TRUE)
  z <- sweep(x, 2, mu) %*% e$vectors
  -0.5 * (rowSums(sweep(z^2, 2, e$values, "/")) + sum(log(e$values)) + ncol(x) * log(2 * pi))
}

log_mixture <- function(x, pro, mean, sigma) {
  comp <- sapply(seq_along(pro), function(k) log(pro[k]) + log_normal(x, mean[, k], sigma[, , k]))
  top <- apply(comp, 1, max)
  top + log(rowSums(exp(comp - top)))
}

# The squared L2 distance between two mixtures, by its closed form.
l2_distance <- function(f, g) {
  cross <- function(a, b) {
    total <- 0
    for (i in seq_along(a$pro)) for (j in seq_along(b$pro)) {
      total <- total + a$pro[i] * b$pro[j] *
        exp(log_normal(matrix(a$mean[, i], 1), b$mean[, j], a$variance$sigma[, , i] + b$variance$sigma[, , j]))
    }
    total
  }
  sqrt(max(cross(f, f) + cross(g, g) - 2 * cross(f, g), 0))
}

# Component of `estimate` nearest to each true mean.
match_components <- function(mean, truth_mean) {
  apply(truth_mean, 2, function(m) which.min(colSums((mean - m)^2)))
}

# Five honest sites' Mclust fits of `truth` (800 rows each).
honest_fits <- lapply(1:5, function(i) {
  mclust::Mclust(draw(800, seed = 10 + i)$x, G = 3, modelNames = "VVV", verbose = FALSE)
})

# Five sites' Mclust fits; site `corrupt` has its means moved 50 units away.
site_fits <- function(corrupt = 3) {
  fits <- honest_fits
  bad <- fits[[corrupt]]
  bad$parameters$mean <- bad$parameters$mean + 50
  fits[[corrupt]] <- bad
  fits
}
