# The three entry points. Each converts its arguments to plain data, makes one Python call and
# builds the "dfmr" object from what comes back.

# The aggregation methods R accepts (the Python package validates them too); the default is
# read from Python's DistributedGaussianMixture.
.dfmr_methods <- c("robust_dfmr", "dfmr", "mr", "coat", "tkb")

.match_method <- function(method) {
  if (is.null(method)) {
    method <- as.character(.defaults()$method)
  }
  match.arg(method, .dfmr_methods)
}

.data_matrix <- function(x) {
  if (is.data.frame(x)) {
    numeric_columns <- vapply(x, is.numeric, logical(1))
    if (!all(numeric_columns)) {
      stop("x: column(s) ", paste(names(x)[!numeric_columns], collapse = ", "),
           " are not numeric; dfmr fits numeric data only.", call. = FALSE)
    }
    x <- as.matrix(x)
  }
  if (is.null(dim(x))) {
    x <- matrix(x, ncol = 1L)
  }
  if (!is.numeric(x) || length(dim(x)) != 2L) {
    stop("x: expected a numeric matrix, data frame or vector.", call. = FALSE)
  }
  storage.mode(x) <- "double"
  x
}

# The mclust `parameters` of one site: an Mclust/densityMclust/dfmr fit or a parameter list.
.site_parameters <- function(fit, label) {
  if (is.list(fit) && is.list(fit$parameters)) {
    return(fit$parameters)
  }
  if (is.list(fit) && all(c("pro", "mean", "variance") %in% names(fit))) {
    return(fit)
  }
  stop(label, ": expected an Mclust fit or list(pro, mean, variance = list(sigma)); got an object of class ",
       paste(class(fit), collapse = "/"), ".", call. = FALSE)
}

.sites <- function(fits) {
  if (inherits(fits, c("Mclust", "densityMclust", "dfmr")) || !is.list(fits) || length(fits) == 0L) {
    stop("fits: expected a non-empty list with one Mclust fit or parameter list per site.", call. = FALSE)
  }
  labels <- paste("site", seq_along(fits))
  if (!is.null(names(fits))) {
    named <- nzchar(names(fits))
    labels[named] <- sprintf("%s ('%s')", labels[named], names(fits)[named])
  }
  # The number of rows behind each fit (mclust's $n): the server's sizes, which weight the sites in the
  # pool and calibrate robust_dfmr's tests; NA if unknown.
  sizes <- vapply(fits, function(fit) {
    n <- if (is.list(fit)) fit$n else NULL
    if (is.numeric(n) && length(n) == 1L && is.finite(n)) as.numeric(n) else NA_real_
  }, numeric(1))
  list(parameters = unname(Map(.site_parameters, fits, labels)),
       names = if (is.null(names(fits))) NULL else as.list(names(fits)),
       sizes = unname(sizes))
}

# mclust's parameter list from what Python returns: the variance list of the model, with the fields
# Mclust() gives that model, in its order (dfmr.covariance writes them); reticulate and rpy2 give the
# same objects (arrays travel with their dimensions), so only the storage modes are set here.
.mclust_parameters <- function(p) {
  variance <- lapply(p$variance, function(field) {
    if (is.numeric(field)) storage.mode(field) <- "double"
    field
  })
  variance$modelName <- as.character(variance$modelName)
  variance$d <- as.integer(variance$d)
  variance$G <- as.integer(variance$G)
  mean <- if (variance$d == 1L) as.numeric(p$mean) else matrix(as.numeric(p$mean), variance$d, variance$G)
  list(pro = as.numeric(p$pro), mean = mean, variance = variance)
}

.optional <- function(value, as = as.numeric) {
  if (is.null(value)) NULL else as(as.vector(value))
}

# A number from Python, NA when not sent or NaN.
.na_nan <- function(x) {
  if (is.null(x)) NA_real_ else if (is.nan(as.numeric(x))) NA_real_ else as.numeric(x)
}

# robust_dfmr's decisions: one row per dropped site or component (NA component: the whole site);
# where the sizes came from, each site's share of a vote and the groups of sites sharing one.
.screening <- function(s, sites) {
  if (is.null(s)) {
    return(NULL)
  }
  votes <- if (is.null(s$votes)) NULL else stats::setNames(as.numeric(as.vector(s$votes)), sites)
  # NA when unknown (NaN from Python: server sizes) or not sent (an older Python dfmr).
  calibrated_n <- if (is.null(s$calibrated_n)) NA_real_ else as.numeric(s$calibrated_n)
  decisions <- data.frame(site = as.integer(as.vector(s$site)), component = as.integer(as.vector(s$component)),
                          slot = as.integer(as.vector(s$slot)), rule = as.character(unlist(s$rule)),
                          statistic = as.numeric(as.vector(s$statistic)), cutoff = as.numeric(as.vector(s$cutoff)),
                          stringsAsFactors = FALSE)
  list(decisions = decisions, components_kept = as.integer(as.vector(s$components_kept)),
       n_samples_known = as.logical(s$n_samples_known),
       size_source = if (is.null(s$size_source)) NA_character_ else as.character(s$size_source),
       calibrated_n = if (is.nan(calibrated_n)) NA_real_ else calibrated_n, votes = votes,
       vote_groups = lapply(s$vote_groups, function(g) as.integer(as.vector(g))),
       # The consistency check against the sites inside DFMR's radius ("rejected": the aggregate is over them).
       consistency = if (is.null(s$consistency)) NA_character_ else as.character(s$consistency),
       consistency_statistic = .na_nan(s$consistency_statistic),
       consistency_p_value = .na_nan(s$consistency_p_value),
       consistency_sites = if (is.null(s$consistency_sites)) integer(0) else as.integer(as.vector(s$consistency_sites)))
}

# The test of equal mixing proportions across sites (dfmr.sites.homogeneity_test): overall and per site
# (NA for the sites not tested).
.homogeneity <- function(h, sites) {
  if (is.null(h)) {
    return(NULL)
  }
  na <- function(v) {
    v <- as.numeric(v)
    v[is.nan(v)] <- NA
    v
  }
  list(statistic = as.numeric(h$statistic), df = as.integer(h$df), p.value = as.numeric(h$p_value),
       design_effect = as.numeric(h$design_effect), adjust = as.character(h$adjust),
       sites = data.frame(site = sites, statistic = na(h$site_statistic), df = as.integer(h$site_df),
                          p.value = na(h$site_p_value), adj.p.value = na(h$site_p_adjusted),
                          stringsAsFactors = FALSE))
}

.new_dfmr <- function(raw, call, data = NULL, sites = NULL) {
  m <- as.integer(raw$n_machines)
  distances <- if (is.null(raw$distances)) NULL else matrix(as.numeric(raw$distances), m, m)
  if (is.null(sites)) {
    sites <- paste("site", seq_len(m))
  }
  if (!is.null(distances)) {
    dimnames(distances) <- list(sites, sites)
  }
  parameters <- .mclust_parameters(raw$parameters)
  if (!is.null(data) && ncol(data) > 1L && !is.null(colnames(data))) {
    rownames(parameters$mean) <- colnames(data)
  }
  site_weights <- NULL
  if (!is.null(raw$site_weights)) {  # site_weights = "free": each site's own proportions, sites x G
    site_weights <- matrix(as.numeric(raw$site_weights), m, as.integer(raw$G),
                           dimnames = list(sites, seq_len(as.integer(raw$G))))
    site_weights[is.nan(site_weights)] <- NA  # the sites not kept
  }
  structure(list(
    call = call,
    data = data,
    modelName = as.character(raw$modelName),
    n = if (is.null(data)) NA_integer_ else nrow(data),
    d = as.integer(raw$d),
    G = as.integer(raw$G),
    df = as.numeric(raw$df),
    parameters = parameters,
    site_weights = site_weights,
    site_homogeneity = .homogeneity(raw$site_homogeneity, sites),
    method = as.character(raw$method),
    sites = sites,
    retained = as.integer(as.vector(raw$retained)),
    center = .optional(raw$center, as.integer),
    distances = distances,
    radius = .optional(raw$radius),
    threshold = .optional(raw$threshold),
    cutoff = .optional(raw$cutoff),
    objective = .optional(raw$objective),
    n_iter = as.integer(raw$n_iter),
    converged = as.logical(raw$converged),
    alpha = .optional(raw$alpha),
    screening = .screening(raw$screening, sites),
    local = lapply(raw$local, .mclust_parameters),
    # What inference (vcov, confint, site_tests) needs to rerun the aggregation in Python: every
    # row's site (dfmr_fit), the sites' sizes (NULL if unknown) and the aggregation's own settings.
    machine = .optional(raw$machine, as.integer),
    sizes = .optional(raw$sizes, as.integer),
    settings = raw$settings
  ), class = "dfmr")
}

# One mclust model name (or one of scikit-learn's four) for an aggregate; NULL leaves the choice to Python.
.model_name <- function(modelNames) {
  if (is.null(modelNames)) {
    return(NULL)
  }
  if (!is.character(modelNames) || length(modelNames) != 1L || is.na(modelNames)) {
    stop("modelNames: give one covariance model, an mclust name such as \"EEE\" or \"VVV\".", call. = FALSE)
  }
  modelNames
}

.site_weights <- function(site_weights) {
  if (is.null(site_weights)) NULL else match.arg(site_weights, c("shared", "free"))
}

# mclust's default grid of models: all fourteen (E and V in one dimension), as Mclust().
.default_models <- function(d) {
  if (d == 1L) c("E", "V") else mclust::mclust.options("emModelNames")
}

# The candidates' BIC as mclust's "mclustBIC" object (G x models, mclust's sign: 2 log L - df log n,
# larger is better; NA where a candidate could not be fitted), so that mclust's summary() and plot()
# methods read it.
.mclust_bic <- function(criterion, G, modelNames, n, d) {
  bic <- matrix(NA_real_, length(G), length(modelNames), dimnames = list(G, modelNames))
  at <- cbind(match(as.integer(unlist(criterion$n_components)), G),
              match(as.character(unlist(criterion$covariance_type)), modelNames))
  bic[at] <- -as.numeric(unlist(criterion$bic))
  bic[is.nan(bic)] <- NA
  structure(bic, G = G, modelNames = modelNames, control = mclust::emControl(),
            initialization = list(hcPairs = NULL, subset = NULL, noise = NULL), warn = FALSE, n = n, d = d,
            oneD = d == 1L, criterion = "BIC", returnCodes = ifelse(is.na(bic), -1, 0), class = "mclustBIC")
}

dfmr_fit <- function(x, G = 1:9, machines = 10, method = NULL, threshold = NULL, seed = NULL, modelNames = NULL,
                     site_weights = NULL, ...) {
  call <- match.call()
  x <- .data_matrix(x)
  method <- .match_method(method)
  if (!is.numeric(G) || length(G) == 0L || anyNA(G) || any(G < 1) || any(G != round(G))) {
    stop("G: give one or more whole numbers of components, e.g. G = 3 or G = 1:9.", call. = FALSE)
  }
  G <- sort(unique(as.integer(G)))
  if (is.null(modelNames) && length(G) > 1L) {
    modelNames <- .default_models(ncol(x))
  }
  if (!is.null(modelNames) && (!is.character(modelNames) || anyNA(modelNames) || length(modelNames) == 0L)) {
    stop("modelNames: give covariance model names, such as \"EEE\" or c(\"EII\", \"VVV\").", call. = FALSE)
  }
  machine <- NULL
  sites <- NULL
  if (length(machines) > 1L) {
    if (length(machines) != nrow(x) || anyNA(machines)) {
      stop("machines: either the number of sites, or one site label per row of x (no NA); got ",
           length(machines), " values for ", nrow(x), " rows.", call. = FALSE)
    }
    site <- droplevels(as.factor(machines))
    machine <- as.integer(site)
    sites <- levels(site)
    machines <- nlevels(site)
  }
  raw <- .python("fit", x = x, G = G, machines = machines, method = method, threshold = threshold,
                 seed = seed, machine = machine, names = if (is.null(sites)) NULL else as.list(sites),
                 modelNames = if (is.null(modelNames)) NULL else as.list(unique(modelNames)),
                 site_weights = .site_weights(site_weights), ...)
  fit <- .new_dfmr(raw, call, data = x, sites = sites)
  if (!is.null(raw$criterion)) {
    fit$BIC <- .mclust_bic(raw$criterion, G, if (is.null(modelNames)) fit$modelName else unique(modelNames),
                           nrow(x), ncol(x))
  }
  fit
}

dfmr_aggregate <- function(fits, G, method = NULL, threshold = NULL, data = NULL, modelNames = NULL,
                           site_weights = NULL, ...) {
  call <- match.call()
  method <- .match_method(method)
  sites <- .sites(fits)
  raw <- .python("aggregate", sites = sites$parameters, G = G, method = method, threshold = threshold,
                 names = sites$names, sizes = as.list(sites$sizes), modelNames = .model_name(modelNames),
                 site_weights = .site_weights(site_weights), ...)
  .new_dfmr(raw, call, data = if (is.null(data)) NULL else .data_matrix(data),
            sites = if (is.null(names(fits))) NULL else names(fits))
}

dfmr_distances <- function(fits) {
  sites <- .sites(fits)
  m <- length(fits)
  D <- matrix(as.numeric(.python("distances", sites = sites$parameters, names = sites$names)), m, m)
  if (!is.null(names(fits))) {
    dimnames(D) <- list(names(fits), names(fits))
  }
  D
}
