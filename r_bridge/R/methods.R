# Methods for "dfmr" objects, in mclust's conventions. Densities and posteriors come from mclust
# itself (the parameters are in its layout), so nothing of the method is recomputed here.

.method_label <- c(
  robust_dfmr = "screened DFMR: components tested against a robust centre (robust_dfmr)",
  dfmr = "distance-filtered mixture reduction (DFMR)",
  mr = "mixture reduction of all sites (MR)",
  coat = "the centre site's own estimate (COAT)",
  tkb = "trimmed k-barycenter (TKB)"
)

.describe_method <- function(method) {
  label <- .method_label[method]
  if (is.na(label)) method else unname(label)
}

.data_for <- function(object, data, what) {
  if (is.null(data)) {
    data <- object$data
  }
  if (is.null(data)) {
    stop(what, " needs data: this aggregate has none, pass data = (a matrix with ", object$d, " columns).",
         call. = FALSE)
  }
  data <- .data_matrix(data)
  if (ncol(data) != object$d) {
    stop(what, ": data has ", ncol(data), " columns but the mixture has d = ", object$d, ".", call. = FALSE)
  }
  data
}

.kept <- function(object) {
  seq_along(object$sites) %in% object$retained
}

print.dfmr <- function(x, ...) {
  cat("'dfmr' model object: ", .describe_method(x$method), "\n", sep = "")
  cat(sprintf("%s mixture with %d component%s in %d dimension%s, from %d sites\n", x$modelName, x$G,
              if (x$G == 1L) "" else "s", x$d, if (x$d == 1L) "" else "s", length(x$sites)))
  dropped <- x$sites[!.kept(x)]
  cat(sprintf("Retained %d of %d sites", length(x$retained), length(x$sites)))
  if (!is.null(x$center)) cat("; centre:", x$sites[x$center])
  cat("\n")
  if (length(dropped)) cat("Dropped:", paste(dropped, collapse = ", "), "\n")
  cat("\nAvailable components:\n")
  print(names(x))
  invisible(x)
}

summary.dfmr <- function(object, data = NULL, se = FALSE, type = NULL, ...) {
  if (is.null(data)) data <- object$data
  out <- list(method = object$method, modelName = object$modelName, d = object$d, G = object$G,
              sites = object$sites, retained = object$retained, center = object$center,
              radius = object$radius, threshold = object$threshold, cutoff = object$cutoff,
              objective = object$objective, n_iter = object$n_iter, converged = object$converged,
              pro = object$parameters$pro, mean = object$parameters$mean,
              variance = if (object$d == 1L) object$parameters$variance$sigmasq else object$parameters$variance$sigma,
              loglik = NULL, bic = NULL, n = NULL, df = NULL)
  if (!is.null(object$center) && !is.null(object$distances)) {
    out$table <- data.frame(site = object$sites, distance = object$distances[object$center, ],
                            retained = .kept(object), row.names = NULL)
  } else {
    out$table <- data.frame(site = object$sites, retained = .kept(object), row.names = NULL)
  }
  if (!is.null(object$screening)) {
    out$table$components <- object$screening$components_kept
    decisions <- object$screening$decisions
    decisions$site <- object$sites[decisions$site]
    out$screening <- decisions
    out$n_samples_known <- object$screening$n_samples_known
  }
  out$site_weights <- object$site_weights
  out$BIC <- if (is.null(object$BIC)) NULL else summary(object$BIC)  # mclust's best three
  out$site_homogeneity <- object$site_homogeneity
  if (!is.null(data)) {
    ll <- logLik(object, data = data)
    out$loglik <- as.numeric(ll)
    out$n <- attr(ll, "nobs")
    out$df <- attr(ll, "df")
    out$bic <- BIC(object, data = data)
  }
  if (isTRUE(se)) {
    inf <- .inference(object, type = type, ...)
    out$coefficients <- .coefficients(inf)
    out$inference <- list(type = inf$type, df = inf$df_resid)
  }
  class(out) <- "summary.dfmr"
  out
}

print.summary.dfmr <- function(x, digits = getOption("digits") - 3L, ...) {
  rule <- strrep("-", 60)
  cat(rule, "\nDistributed Gaussian mixture (dfmr)\n", rule, "\n\n", sep = "")
  cat("Aggregation:", .describe_method(x$method), "\n")
  cat(sprintf("Mclust %s model with %d component%s, d = %d\n", x$modelName, x$G, if (x$G == 1L) "" else "s", x$d))
  cat(sprintf("Sites: %d, retained: %d", length(x$sites), length(x$retained)))
  if (!is.null(x$center)) cat(", centre:", x$sites[x$center])
  cat("\n")
  if (!is.null(x$cutoff)) {
    cat(sprintf("Cut-off: %s = kappa %s x radius %s\n", format(x$cutoff, digits = digits),
                format(x$threshold, digits = digits), format(x$radius, digits = digits)))
  }
  if (!is.null(x$objective)) {
    cat(sprintf("Reduction: objective %s after %d iterations (%s)\n", format(x$objective, digits = digits),
                x$n_iter, if (isTRUE(x$converged)) "converged" else "not converged"))
  }
  if (!is.null(x$loglik)) {
    cat("\n")
    print(data.frame(`log-likelihood` = x$loglik, n = x$n, df = x$df, BIC = x$bic, check.names = FALSE),
          digits = digits, row.names = "")
  }
  if (!is.null(x$BIC)) {
    cat("\nBest BIC values of the candidates (mclust's sign: larger is better):\n")
    print(x$BIC, digits = digits)
  }
  cat("\nSites:\n")
  print(x$table, digits = digits, row.names = FALSE)
  if (!is.null(x$screening)) {
    cat("\nScreening decisions (", if (isTRUE(x$n_samples_known)) "site sizes known" else
          "site sizes unknown: equal sizes assumed", "):\n", sep = "")
    if (nrow(x$screening) == 0L) cat("(no site or component dropped)\n") else
      print(x$screening, digits = digits, row.names = FALSE)
  }
  cat("\nMixing probabilities:\n")
  print(stats::setNames(x$pro, seq_along(x$pro)), digits = digits)
  if (!is.null(x$site_weights)) {
    cat("\nSites' own mixing probabilities (site_weights = \"free\"; NA: site not kept):\n")
    print(x$site_weights, digits = digits)
  }
  h <- x$site_homogeneity
  if (!is.null(h)) {
    cat(sprintf("\nEqual proportions across sites: G = %s, df = %d, p-value = %s (design effect %s)\n",
                format(h$statistic, digits = digits), h$df, format.pval(h$p.value, digits = digits),
                format(h$design_effect, digits = digits)))
    cat("Per site (", h$adjust, "-adjusted):\n", sep = "")
    print(h$sites, digits = digits, row.names = FALSE)
  }
  cat("\nMeans:\n")
  print(x$mean, digits = digits)
  cat("\nVariances:\n")
  if (x$d == 1L) {
    print(x$variance, digits = digits)
  } else {
    for (k in seq_len(x$G)) {
      cat("[,,", k, "]\n", sep = "")
      print(x$variance[, , k], digits = digits)
    }
  }
  if (!is.null(x$coefficients)) {
    how <- c(jackknife = "site-level jackknife", information = "observed information of the retained sites",
             bootstrap = "site-level parametric bootstrap")[[x$inference$type]]
    cat("\nEstimates with standard errors (", how,
        if (is.null(x$inference$df)) "" else sprintf("; t with %s df", format(x$inference$df)), "):\n", sep = "")
    stats::printCoefmat(x$coefficients, digits = digits, na.print = "")
  }
  invisible(x)
}

# As mclust's predict.Mclust: component log-densities from mclust::cdens (which reads the model's own
# variance fields, for every model and for mclust's single-component names), plus log proportions.
predict.dfmr <- function(object, newdata, ...) {
  data <- .data_for(object, if (missing(newdata)) NULL else newdata, "predict")
  # mclust::cdens() looks its model function up in the caller's frame; call that function directly.
  cdens <- getExportedValue("mclust", paste0("cdens", object$modelName))
  logz <- cdens(data = data, parameters = object$parameters, logarithm = TRUE)
  logz <- sweep(cbind(logz), 2L, log(object$parameters$pro / sum(object$parameters$pro)), "+")
  top <- apply(logz, 1L, max)
  z <- exp(logz - (top + log(rowSums(exp(logz - top)))))
  colnames(z) <- seq_len(object$G)
  list(classification = max.col(z, ties.method = "first"), z = z)
}

logLik.dfmr <- function(object, data = NULL, ...) {
  data <- .data_for(object, data, "logLik")
  logdens <- mclust::dens(data = data, modelName = object$modelName, parameters = object$parameters,
                          logarithm = TRUE)
  structure(sum(logdens), df = object$df, nobs = nrow(data), class = "logLik")
}

# mclust's sign convention: 2 log L - df log n (larger is better), as mclust::bic.
BIC.dfmr <- function(object, data = NULL, ...) {
  ll <- logLik(object, data = data)
  2 * as.numeric(ll) - attr(ll, "df") * log(attr(ll, "nobs"))
}

plot.dfmr <- function(x, what = NULL, data = NULL, ...) {
  if (is.null(what)) {
    what <- if (!is.null(x$center) && !is.null(x$distances)) "distances" else "classification"
  }
  what <- match.arg(what, c("distances", "classification", "BIC"))
  if (what == "BIC") {
    if (is.null(x$BIC)) {
      stop("plot(what = \"BIC\"): this fit chose no model; give dfmr_fit() several G or modelNames.", call. = FALSE)
    }
    plot(x$BIC, ...)  # mclust's plot of an mclustBIC object
    return(invisible(x))
  }
  if (what == "distances") {
    if (is.null(x$center) || is.null(x$distances)) {
      stop("plot(what = \"distances\"): method '", x$method, "' computes no L2 distances to a centre; ",
           "use method \"dfmr\" or \"coat\".", call. = FALSE)
    }
    distance <- x$distances[x$center, ]
    kept <- .kept(x)
    graphics::plot(seq_along(distance), distance, pch = ifelse(kept, 19, 4), col = ifelse(kept, "black", "red"),
                   xaxt = "n", xlab = "site", ylab = "L2 distance to the centre",
                   ylim = range(0, distance, x$cutoff), main = "Distances to the centre site", ...)
    graphics::axis(1, at = seq_along(distance), labels = x$sites)
    if (!is.null(x$cutoff)) {
      graphics::abline(h = x$cutoff, lty = 2)
    }
    graphics::legend("topleft", legend = c("retained", "dropped", "cut-off"), pch = c(19, 4, NA),
                     lty = c(NA, NA, 2), col = c("black", "red", "black"), bty = "n")
    return(invisible(x))
  }
  if (x$d != 2L) {
    stop("plot(what = \"classification\") draws d = 2 data; this mixture has d = ", x$d, ".", call. = FALSE)
  }
  data <- .data_for(x, data, "plot(what = \"classification\")")
  classes <- predict(x, data)$classification
  graphics::plot(data, col = classes, pch = 20, cex = 0.6, main = "Classification", ...)
  for (k in seq_len(x$G)) {
    mclust::mvn2plot(mu = x$parameters$mean[, k], sigma = x$parameters$variance$sigma[, , k], k = 15, col = k)
  }
  invisible(x)
}

# ----------------------------------------------------------------------------------- inference
# Standard errors, intervals and site tests come from the Python package (dfmr.inference, through
# dfmr.r.api.inference); R only arranges them in its conventions.

.inference_types <- c("jackknife", "information", "bootstrap")

.inference <- function(object, type = NULL, level = 0.95, scale = "link", adjust = "holm", alpha = 0.05,
                       n_boot = 200, seed = 0) {
  if (!is.null(type)) {
    type <- match.arg(type, .inference_types)
  }
  if (!is.numeric(level) || length(level) != 1L || !(level > 0 && level < 1)) {
    stop("level must be one number in (0, 1).", call. = FALSE)
  }
  has_rows <- !is.null(object$machine) && !is.null(object$data)
  variables <- if (object$d > 1L) rownames(object$parameters$mean) else NULL
  .python("inference", local = object$local, G = object$G, method = object$method,
          parameters = object$parameters, settings = object$settings,
          x = if (has_rows) object$data else NULL, machine = if (has_rows) object$machine else NULL,
          sizes = object$sizes, type = type, level = level, scale = scale, adjust = adjust, alpha = alpha,
          n_boot = n_boot, seed = seed, variables = if (is.null(variables)) NULL else as.list(variables))
}

.named_matrix <- function(values, rows, columns) {
  matrix(as.numeric(values), length(rows), length(columns), dimnames = list(rows, columns))
}

vcov.dfmr <- function(object, type = NULL, ...) {
  inf <- .inference(object, type = type, ...)
  .named_matrix(inf$vcov, inf$names, inf$names)
}

# R's own column labels ("2.5 %", "97.5 %"), as confint.default writes them.
.percent_labels <- function(level) {
  a <- (1 - level) / 2
  paste(format(100 * c(a, 1 - a), trim = TRUE, scientific = FALSE, digits = 3), "%")
}

confint.dfmr <- function(object, parm, level = 0.95, type = NULL, scale = c("link", "natural"), ...) {
  scale <- match.arg(scale)
  inf <- .inference(object, type = type, level = level, scale = scale, ...)
  ci <- .named_matrix(c(inf$lower, inf$upper), inf$names, .percent_labels(level))
  if (missing(parm)) {
    return(ci)
  }
  if (is.character(parm) && !all(parm %in% inf$names)) {
    stop("parm: unknown parameter(s) ", paste(setdiff(parm, inf$names), collapse = ", "), "; the parameters are ",
         paste(inf$names, collapse = ", "), ".", call. = FALSE)
  }
  ci[parm, , drop = FALSE]
}

# The coefficient table of summary(se = TRUE), in printCoefmat's layout.
.coefficients <- function(inf) {
  label <- if (isTRUE(inf$use_t)) c("t value", "Pr(>|t|)") else c("z value", "Pr(>|z|)")
  table <- .named_matrix(c(inf$estimate, inf$se, inf$statistic, inf$p_value), inf$names,
                         c("Estimate", "Std. Error", label))
  table[is.nan(table)] <- NA  # no test of "= 0" for proportions and variances: left empty
  table
}

site_tests <- function(object, adjust = "holm", alpha = 0.05, ...) {
  if (!inherits(object, "dfmr")) {
    stop("object: expected a \"dfmr\" object (dfmr_fit or dfmr_aggregate), got ", paste(class(object), collapse = "/"),
         ".", call. = FALSE)
  }
  adjust <- match.arg(adjust, stats::p.adjust.methods)
  # The tests do not depend on the interval method; the jackknife needs nothing but the estimates.
  tests <- .inference(object, type = "jackknife", adjust = adjust, alpha = alpha, ...)$tests
  if (is.null(tests)) {
    stop("site_tests() needs the sites' sizes: they are known for dfmr_fit() results and for aggregates of ",
         "Mclust fits (their $n), not for bare parameter lists.", call. = FALSE)
  }
  out <- data.frame(site = object$sites, statistic = as.numeric(tests$statistic), df = as.integer(tests$df),
                    p.value = as.numeric(tests$p_value), adj.p.value = as.numeric(tests$adjusted),
                    flagged = as.logical(tests$flagged), retained = as.logical(tests$retained),
                    n = as.integer(tests$n), stringsAsFactors = FALSE)
  structure(out, class = c("dfmr_site_tests", "data.frame"), adjust = adjust, alpha = alpha)
}

plot.dfmr_site_tests <- function(x, ...) {
  alpha <- attr(x, "alpha")
  score <- -log10(pmax(x$adj.p.value, .Machine$double.xmin))
  graphics::plot(seq_len(nrow(x)), score, pch = ifelse(x$retained, 19, 4), col = ifelse(x$flagged, "red", "black"),
                 xaxt = "n", xlab = "site", ylab = expression(-log[10] ~ "adjusted p-value"),
                 ylim = range(0, score, -log10(alpha)),
                 main = sprintf("Site tests (%s adjustment)", attr(x, "adjust")), ...)
  graphics::axis(1, at = seq_len(nrow(x)), labels = x$site)
  graphics::abline(h = -log10(alpha), lty = 2)
  graphics::legend("topleft", legend = c("retained", "not retained", "flagged", sprintf("alpha = %g", alpha)),
                   pch = c(19, 4, 15, NA), lty = c(NA, NA, NA, 2), col = c("black", "black", "red", "black"),
                   bty = "n")
  invisible(x)
}
