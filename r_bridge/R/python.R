# How the R functions reach the Python package: every computation happens there (module
# dfmr.r.api), never in R. In a plain R session the calls go through reticulate. When R is
# embedded in a Python process (rpy2), dfmr.r.activate() hands this package R functions that
# call back into that process (reticulate cannot attach to it), through use_embedded_python().

.state <- new.env(parent = emptyenv())

# Name of the virtual environment that install_dfmr() creates and the package then uses.
.default_envname <- "r-dfmr"

# Called by dfmr.r.activate() (Python) with an R function(name, arguments) that runs
# dfmr.r.api.call in the embedding Python process.
use_embedded_python <- function(call) {
  .state$embedded <- call
  .state$defaults <- NULL
  invisible(NULL)
}

.python_error <- function(message, type = NULL) {
  cond <- structure(
    class = c("dfmr_python_error", "error", "condition"),
    list(message = message, call = NULL, python_type = type)
  )
  stop(cond)
}

.not_available_message <- function(reason) {
  paste0(
    "the Python package 'dfmr' is not available to R (", reason, ").\n",
    "Install it once with dfmr::install_dfmr(\"/path/to/dfmr\") (the dfmr sources), then restart R;\n",
    "or point RETICULATE_PYTHON at a Python that has dfmr installed."
  )
}

.python_api <- function() {
  if (!is.null(.state$api)) {
    return(.state$api)
  }
  if (identical(commandArgs()[1L], "rpy2")) {
    # reticulate attaching to the Python process that embeds this R aborts that process.
    stop("R is running inside Python (rpy2): call dfmr.r.activate() in Python before using dfmr here.",
         call. = FALSE)
  }
  if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) && !reticulate::py_available(initialize = FALSE) &&
      .default_envname %in% reticulate::virtualenv_list()) {
    reticulate::use_virtualenv(.default_envname, required = TRUE)
  }
  found <- tryCatch(reticulate::py_module_available("dfmr"), error = function(e) FALSE)
  if (!isTRUE(found)) {
    python <- tryCatch(reticulate::py_config()$python, error = function(e) conditionMessage(e))
    stop(.not_available_message(paste("Python used:", python)), call. = FALSE)
  }
  api <- tryCatch(reticulate::import("dfmr.r.api"), error = function(e) {
    stop(.not_available_message(paste("importing dfmr.r.api failed:", conditionMessage(e))), call. = FALSE)
  })
  .state$api <- api
  api
}

# Arrays travel as list(`__dim__` = dim, values = column-major values) and everything else as
# plain lists and vectors (see dfmr.r.api): the Debian reticulate refuses NumPy >= 2 arrays, and one
# encoding makes both transports give the same objects.
.to_python <- function(x) {
  if (is.list(x)) {
    out <- lapply(unclass(x), .to_python)
    names(out) <- names(x)
    return(out)
  }
  if (is.language(x) || is.function(x) || is.environment(x)) {
    return(NULL)
  }
  if (is.factor(x)) {
    x <- as.character(x)
  }
  if (!is.null(dim(x))) {
    return(list(`__dim__` = as.list(dim(x)), values = as.vector(x)))
  }
  as.vector(x)
}

.from_python <- function(x) {
  if (!is.list(x)) {
    return(x)
  }
  if ("__dim__" %in% names(x)) {
    dim <- as.integer(unlist(x[["__dim__"]]))
    values <- unlist(x$values)
    if (is.null(values)) values <- numeric(0)
    return(if (length(dim) == 1L) values else array(values, dim))
  }
  out <- lapply(x, .from_python)
  names(out) <- names(x)
  out
}

# Calls dfmr.r.api.call(fun, arguments) and returns its value as R data; a Python exception comes
# back as list(python_error, python_type) and becomes an R error of class "dfmr_python_error", Python
# warnings come back as list(python_value, python_warnings) and become R warnings.
.python <- function(fun, ...) {
  arguments <- .to_python(list(...))
  embedded <- .state$embedded
  out <- if (is.null(embedded)) .python_api()$call(fun, arguments) else embedded(fun, arguments)
  if (is.list(out) && !is.null(out$python_error)) {
    .python_error(as.character(out$python_error), as.character(out$python_type))
  }
  if (is.list(out) && !is.null(out$python_warnings)) {
    for (message in unique(as.character(unlist(out$python_warnings)))) warning(message, call. = FALSE)
    out <- out$python_value
  }
  .from_python(out)
}

.defaults <- function() {
  if (is.null(.state$defaults)) {
    .state$defaults <- .python("defaults")
  }
  .state$defaults
}

# TRUE when the Python package can be reached (examples run only then, as in other reticulate packages).
dfmr_available <- function() {
  if (!is.null(.state$embedded)) {
    return(TRUE)
  }
  isTRUE(tryCatch(!is.null(.python_api()), error = function(e) FALSE))
}

# In the style of reticulate::py_install(): a virtual environment with dfmr built from `source`.
install_dfmr <- function(source, envname = "r-dfmr", method = c("auto", "virtualenv", "conda"),
                         python_version = NULL, ...) {
  method <- match.arg(method)
  if (missing(source) || !is.character(source) || length(source) != 1L || !nzchar(source)) {
    stop("source: give the dfmr sources (a directory with pyproject.toml, or a pip requirement such as ",
         "'git+https://...'), e.g. install_dfmr(\"~/dfmr\").", call. = FALSE)
  }
  if (dir.exists(source)) {
    source <- normalizePath(source)
    if (!file.exists(file.path(source, "pyproject.toml"))) {
      stop("source: ", source, " has no pyproject.toml; give the top directory of the dfmr sources.",
           call. = FALSE)
    }
  }
  # R puts its own and the system's library directories first on LD_LIBRARY_PATH; a Python built
  # with a shared libpython elsewhere (pyenv, /usr/local) would then load the system's libpython in
  # the pip and venv subprocesses and fail. They need none of R's libraries.
  ld_path <- Sys.getenv("LD_LIBRARY_PATH", unset = NA)
  Sys.unsetenv("LD_LIBRARY_PATH")
  on.exit(if (!is.na(ld_path)) Sys.setenv(LD_LIBRARY_PATH = ld_path), add = TRUE)
  reticulate::py_install(packages = source, envname = envname, method = method,
                         python_version = python_version, pip = TRUE, ...)
  message("dfmr is installed in the Python environment '", envname, "'. Restart R, then library(dfmr).")
  invisible(envname)
}
