"""dfmr.r against real R (rpy2, Debian's R and mclust): conversions of every mclust model, the
converter, malformed R objects, and the R package's functions inside the embedded R session."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rpy2.robjects as ro
from rpy2.rinterface_lib.embedded import RRuntimeError
from rpy2.robjects import default_converter, numpy2ri
from rpy2.robjects.conversion import localconverter

import dfmr
import dfmr.r
from dfmr import GaussianMixtureParams, InvalidMixtureError
from dfmr.r._rpy2 import r_to_plain

MULTIVARIATE = ["EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"]
CASES = [(m, 2, "x3") for m in MULTIVARIATE] + [(m, 1, "x3") for m in ("XII", "XXI", "XXX")] + [
    ("E", 2, "x1"), ("V", 2, "x1"), ("X", 1, "x1")]

ro.r("""
suppressPackageStartupMessages(library(mclust))
set.seed(8)
x3 <- rbind(matrix(rnorm(450), 150) %*% matrix(c(1, 0.4, 0, 0, 1, 0.3, 0, 0, 0.8), 3),
            sweep(matrix(rnorm(450, sd = 0.7), 150), 2, c(4, 1, -2), "+"))
x1 <- c(rnorm(150), rnorm(150, 5, 0.6))
""")


def item(obj, name: str):
    """Element ``name`` of an R list (rinterface or robjects)."""
    names = list(obj.names)
    return obj[names.index(name)]


def mclust_fit(model: str, G: int, data: str):
    fit = ro.r(f'Mclust({data}, G = {G}, modelNames = "{model}", verbose = FALSE)')
    assert item(fit, "modelName")[0] == model
    return fit


def mclust_arrays(parameters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mclust's own (pro, means (G, d), covariances (G, d, d)) read straight from the R object."""
    p = r_to_plain(parameters)
    pro = np.atleast_1d(p["pro"])
    G = pro.size
    var = p["variance"]
    d = int(var["d"])
    if d == 1:
        means = np.atleast_1d(p["mean"]).reshape(G, 1)
        cov = np.broadcast_to(np.atleast_1d(var["sigmasq"]), (G,)).reshape(G, 1, 1)
    else:
        means = np.asarray(p["mean"]).reshape(-1, G, order="F").T
        cov = np.moveaxis(np.asarray(var["sigma"]).reshape(d, d, G, order="F"), 2, 0)
    return pro, means, cov


def r_matrix(X: np.ndarray):
    with localconverter(default_converter + numpy2ri.converter):
        return ro.conversion.get_conversion().py2rpy(X)


def r_dens(X: np.ndarray, modelName: str, parameters) -> np.ndarray:
    data = r_matrix(X if X.shape[1] > 1 else X[:, 0])
    return np.asarray(ro.r["dens"](data=data, modelName=modelName, parameters=parameters))


@pytest.mark.parametrize(("model", "G", "data"), CASES, ids=[c[0] for c in CASES])
def test_every_mclust_model_converts_exactly_and_round_trips(model, G, data):
    fit = mclust_fit(model, G, data)
    pro, means, cov = mclust_arrays(item(fit, "parameters"))

    mix = dfmr.r.from_r(fit)
    assert isinstance(mix, GaussianMixtureParams)
    np.testing.assert_allclose(mix.weights, pro, rtol=1e-12, atol=0)
    np.testing.assert_allclose(mix.means, means, rtol=1e-12, atol=1e-12 * np.abs(means).max())
    np.testing.assert_allclose(mix.covariances, cov, rtol=1e-12, atol=1e-12 * np.abs(cov).max())

    back = dfmr.r.to_r(mix)
    pro_b, means_b, cov_b = mclust_arrays(item(back, "parameters"))
    np.testing.assert_allclose(pro_b, pro, rtol=1e-12, atol=0)
    np.testing.assert_allclose(means_b, means, rtol=1e-12, atol=1e-12 * np.abs(means).max())
    np.testing.assert_allclose(cov_b, cov, rtol=1e-12, atol=1e-12 * np.abs(cov).max())
    again = dfmr.r.from_r(back)
    np.testing.assert_allclose(again.covariances, mix.covariances, rtol=1e-12, atol=1e-12 * np.abs(cov).max())
    np.testing.assert_array_equal(again.means, mix.means)

    # The model is kept: to_r writes the fit's own model, with Mclust's fields in Mclust's order
    # (its single-component names X, XII, XXI, XXX are read as the model they equal).
    assert mix.covariance_type == {"X": "V", "XII": "VII", "XXI": "VVI", "XXX": "VVV"}.get(model, model)
    assert item(back, "modelName")[0] == model
    assert list(item(item(back, "parameters"), "variance").names) == \
        list(item(item(fit, "parameters"), "variance").names)
    assert item(back, "df")[0] == item(fit, "df")[0]
    # mclust's density reads the model's own fields (sigmasq, scale, shape, orientation, cholsigma):
    # on ours it equals dfmr's density and mclust's on the fit itself.
    X, _ = mix.sample(100, random_state=1)
    np.testing.assert_allclose(r_dens(X, model, item(back, "parameters")), mix.pdf(X), rtol=1e-10, atol=0)
    np.testing.assert_allclose(r_dens(X, model, item(fit, "parameters")), mix.pdf(X), rtol=1e-10, atol=0)


def test_the_covariances_are_rebuilt_from_the_model_fields_not_copied_from_sigma():
    fit = ro.r('f <- Mclust(x3, G = 2, modelNames = "VEV", verbose = FALSE); f$parameters$variance$sigma <- NULL; f')
    expected = dfmr.r.from_r(mclust_fit("VEV", 2, "x3"))
    np.testing.assert_allclose(dfmr.r.from_r(fit).covariances, expected.covariances, rtol=1e-12)
    tampered = ro.r('g <- Mclust(x3, G = 2, modelNames = "VEV", verbose = FALSE); '
                    'g$parameters$variance$sigma[1, 1, 1] <- 2 * g$parameters$variance$sigma[1, 1, 1]; g')
    with pytest.raises(InvalidMixtureError, match="sigma contradicts the VEV model"):
        dfmr.r.from_r(tampered)


def test_converter_turns_r_fits_and_lists_into_params_and_back():
    conv = default_converter + numpy2ri.converter + dfmr.r.converter
    ro.r('f1 <- Mclust(x3, G = 2, modelNames = "EEV", verbose = FALSE)')
    ro.r('f2 <- densityMclust(x3, G = 2, modelNames = "VVI", verbose = FALSE, plot = FALSE)')
    with localconverter(conv):
        one = ro.r("f1")
        many = ro.r("list(f1, f2, list(pro = c(0.5, 0.5), mean = cbind(c(0, 0, 0), c(1, 1, 1)),"
                    " variance = list(sigma = array(diag(3), c(3, 3, 2)))))")
        frame = ro.r("data.frame(a = 1:3)")
        other = ro.r("list(mean = 1, sd = 2)")
        ro.globalenv["mix"] = one
        ro.globalenv["res"] = dfmr.dfmr([one, *many], 2)
    assert isinstance(one, GaussianMixtureParams)
    assert isinstance(many, list) and len(many) == 3 and all(isinstance(m, GaussianMixtureParams) for m in many)
    np.testing.assert_allclose(many[2].covariances, np.broadcast_to(np.eye(3), (2, 3, 3)))
    assert not isinstance(frame, (GaussianMixtureParams, list))
    with localconverter(default_converter + numpy2ri.converter):
        without = ro.r("list(mean = 1, sd = 2)")
    assert type(other) is type(without) and list(other.keys()) == list(without.keys())  # untouched by dfmr.r
    # the EEV fit goes back as EEV: mclust's decomp2sigma rebuilds the covariances from its fields
    assert ro.r("mix$modelName")[0] == "EEV" and one.covariance_type == "EEV"
    assert list(ro.r("dim(mix$parameters$variance$sigma)")) == [3, 3, 2]
    assert list(ro.r("dim(mix$parameters$variance$orientation)")) == [3, 3, 2]
    np.testing.assert_allclose(np.asarray(ro.r("mix$parameters$mean")), one.means.T, rtol=0, atol=0)
    np.testing.assert_allclose(
        np.asarray(ro.r("with(mix$parameters$variance, decomp2sigma(d, G, scale, shape, orientation))")),
        np.moveaxis(one.covariances, 0, 2), rtol=1e-12)
    expected = dfmr.dfmr([one, *many], 2)
    assert list(ro.r("class(res)")) == ["dfmr"]
    assert list(ro.r("res$retained")) == (expected.retained + 1).tolist()
    assert ro.r("res$center")[0] == expected.center + 1
    assert ro.r("res$method")[0] == "dfmr"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("list(pro = c(0.5, NA), mean = cbind(c(0, 0), c(1, 1)), variance = list(sigma = array(diag(2), c(2, 2, 2))))",
         "pro and mean must be finite"),
        ("list(pro = c(0.5, 0.5), mean = cbind(c(0, 0), c(1, 1)), variance = list(sigma = array(diag(2), c(2, 2, 3))))",
         "sigma: expected a 2 x 2 x 2 array"),
        ("list(pro = c(0.5, 0.5), mean = cbind(c(0, 0), c(1, 1)),"
         " variance = list(sigma = array(c(1, 2, 2, 1), c(2, 2, 2))))",
         "positive definite"),
        ("list(pro = c(0.5, 0.5), mean = cbind(c(0, 0), c(1, 1)))", "missing field"),
        ('list(pro = 1, mean = c(0, 0), variance = list(modelName = "XYZ", sigma = diag(2)))',
         "'XYZ' is not an mclust covariance model"),
        ('list(pro = c(0.5, 0.5), mean = cbind(c(0, 0), c(1, 1)), variance = list(modelName = "EEE", d = 2, G = 2))',
         "variance\\$Sigma is missing"),
        ('Mclust(x3, G = 2, modelNames = "VVV", initialization = list(noise = rep(c(TRUE, FALSE), c(5, 295))), '
         "verbose = FALSE)", "noise component"),
        ("list(f1 = Mclust(x1, G = 2, verbose = FALSE), b = list(a = 1))",
         "element 2 \\('b'\\): expected an Mclust fit"),
    ],
    ids=["NA", "wrong-shaped sigma", "indefinite sigma", "no variance", "unknown model", "model field missing",
         "noise component", "not a mixture"],
)
def test_malformed_r_objects_raise_the_validation_errors(code, message):
    with pytest.raises(InvalidMixtureError, match=message):
        dfmr.r.from_r(ro.r(code))


def test_non_lists_are_refused():
    with pytest.raises(TypeError, match="expected an R list"):
        dfmr.r.from_r(ro.r("1:3"))
    with pytest.raises(TypeError, match="to_r: expected GaussianMixtureParams"):
        dfmr.r.to_r({"weights": [1.0]})


@pytest.fixture(scope="module")
def activated():
    dfmr.r.activate()
    yield
    dfmr.r.deactivate()


def test_activate_gives_r_the_package_functions_running_this_python(activated):
    ro.r('sites <- lapply(split(as.data.frame(x3), rep(1:6, 50)), Mclust, G = 2, modelNames = "VVV", verbose = FALSE)')
    ro.r("sites[[2]]$parameters$mean <- sites[[2]]$parameters$mean + 40")
    res = ro.r("res <- dfmr_aggregate(sites, G = 2); res")
    assert list(ro.r("class(res)")) == ["dfmr"]
    local = dfmr.r.from_r(ro.r("unname(sites)"))
    # the default method, calibrated by the sites' sizes (mclust's $n)
    expected = dfmr.robust_dfmr(local, 2, n_samples=list(ro.r("sapply(sites, function(s) s$n)")))
    assert 2 not in list(ro.r("res$retained"))
    assert list(ro.r("res$retained")) == (expected.retained + 1).tolist()
    got = dfmr.r.from_r(res)  # the same computation in this process: equal up to the Cholesky round trip
    np.testing.assert_array_equal(got.means, expected.mixture.means)
    np.testing.assert_allclose(got.covariances, expected.mixture.covariances, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(ro.r("dfmr_distances(sites)")), dfmr.pairwise_l2(local), rtol=1e-12)

    X = np.asarray(ro.r("x3"))
    fit = ro.r("fit <- dfmr_fit(x3, G = 2, machines = 3, seed = 5); fit")
    est = dfmr.DistributedGaussianMixture(2, n_machines=3, random_state=5, backend="serial").fit(X)
    np.testing.assert_array_equal(dfmr.r.from_r(fit).means, est.means_)
    np.testing.assert_allclose(dfmr.r.from_r(fit).covariances, est.covariances_, rtol=1e-13)
    assert ro.r('inherits(summary(fit), "summary.dfmr")')[0]
    np.testing.assert_allclose(ro.r("as.numeric(logLik(fit))")[0], est.score(X) * X.shape[0], rtol=1e-10)


def python_intervals(est: dfmr.DistributedGaussianMixture, scale: str) -> np.ndarray:
    """Python's confidence_intervals() flattened in R's row order: pro1..pro(G-1), means, upper triangles."""
    ci = est.confidence_intervals(0.95) if scale == "natural" else est.inference_.confidence_intervals(0.95, scale)
    rows, cols = np.triu_indices(est.n_features_in_)
    return np.column_stack([
        np.concatenate([ci["weights"][b][:-1], ci["means"][b].ravel(), ci["covariances"][b][:, rows, cols].ravel()])
        for b in (0, 1)
    ])


R_SIMULATED = ("set.seed(11); first <- runif(1500) < 0.4; "
               "sim <- ifelse(first, rnorm(1500, -2, 1), rnorm(1500, 2, 1.5))")


@pytest.mark.parametrize(
    ("data", "G", "machines", "method", "names"),
    [("faithful", 2, 8, None, ["pro1", "mean.eruptions.1", "mean.waiting.1", "mean.eruptions.2", "mean.waiting.2",
                               "sigma.eruptions.eruptions.1", "sigma.eruptions.waiting.1", "sigma.waiting.waiting.1",
                               "sigma.eruptions.eruptions.2", "sigma.eruptions.waiting.2", "sigma.waiting.waiting.2"]),
     ("sim", 2, 10, "mr", ["pro1", "mean.1", "mean.2", "sigmasq.1", "sigmasq.2"])],
    ids=["faithful", "simulated"],
)
def test_r_confint_equals_python_confidence_intervals(activated, data, G, machines, method, names):
    """confint() in R (embedded here, and a plain Rscript through reticulate) = the estimator's intervals."""
    ro.r(R_SIMULATED)
    method_arg = "" if method is None else f', method = "{method}"'
    call = f"dfmr_fit({data}, G = {G}, machines = {machines}, seed = 1{method_arg})"
    X = np.asarray(ro.r(f"as.matrix({data})")).reshape(-1, 2 if data == "faithful" else 1, order="F")
    est = dfmr.DistributedGaussianMixture(G, n_machines=machines, random_state=1, backend="threads",
                                          **({} if method is None else {"aggregator": method})).fit(X)
    ro.r(f"fit <- {call}")
    # the bootstrap (200 reruns of the aggregation) for MR only, where it is fast
    for kind in ("jackknife", "information") + (("bootstrap",) if method == "mr" else ()):
        est.infer(X, method=kind)
        for scale in ("natural", "link"):
            ci = ro.r(f'ci <- confint(fit, type = "{kind}", scale = "{scale}"); ci')
            assert list(ro.r("rownames(ci)")) == names and list(ro.r("colnames(ci)")) == ["2.5 %", "97.5 %"]
            expected = python_intervals(est, scale)
            np.testing.assert_allclose(np.asarray(ci), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    # R's default: the aggregator's default method on the logit / log scale
    est.infer(X)
    expected = python_intervals(est, "link")
    np.testing.assert_allclose(np.asarray(ro.r("confint(fit)")), expected, rtol=1e-10,
                               atol=1e-10 * np.abs(expected).max())
    assert np.asarray(ro.r("fit$local[[1]]$pro")).size == G
    tests = est.inference_.machine_tests  # the same site tests, and the summary's standard errors
    np.testing.assert_allclose(np.asarray(ro.r("site_tests(fit)$statistic")), tests.statistic, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(ro.r("site_tests(fit)$adj.p.value")), tests.pvalues_adjusted, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(ro.r('summary(fit, se = TRUE)$coefficients[, "Std. Error"]')),
                               np.delete(est.inference_.bse.to_numpy(), G - 1), rtol=1e-10)

    script = f'{R_SIMULATED}; suppressPackageStartupMessages(library(dfmr)); print(confint({call}), digits = 17)'
    env = {**os.environ, "RETICULATE_PYTHON": sys.executable}
    proc = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = [line.split() for line in proc.stdout.splitlines()[1:]]
    assert [row[0] for row in printed] == names
    np.testing.assert_allclose(np.array([[float(v) for v in row[1:]] for row in printed]), expected, rtol=1e-10,
                               atol=1e-10 * np.abs(expected).max())


def test_r_confint_covers_the_truth_of_a_two_component_population(activated):
    """A small version of tests/benchmarks/bench_r_coverage.R (200 repetitions there): 10 repetitions,
    5 parameters each, from the embedded session."""
    hits = np.asarray(ro.r("""
        sapply(1:10, function(r) {
          set.seed(r)
          first <- runif(1000) < 0.4
          x <- ifelse(first, rnorm(1000, -2, 1), rnorm(1000, 2, 1.5))
          fit <- dfmr_fit(x, G = 2, machines = 10, seed = r)
          k <- rank(fit$parameters$mean)
          truth <- c(c(0.4, 0.6)[k[1]], c(-2, 2)[k], c(1, 2.25)[k])
          ci <- confint(fit)
          ci[, 1] <= truth & truth <= ci[, 2]
        })"""))
    assert hits.shape == (5, 10)
    assert 0.85 <= hits.mean() <= 1.0, hits.mean(axis=1)


def test_embedded_python_errors_are_r_errors_naming_the_site(activated):
    ro.r('bad <- list(Mclust(x3, G = 2, modelNames = "VVV", verbose = FALSE), '
         "list(pro = c(0.5, 0.5), mean = cbind(c(0, 0, 0), c(1, 1, 1)),"
         " variance = list(sigma = array(-diag(3), c(3, 3, 2)))))")
    with pytest.raises(RRuntimeError, match="site 2: covariances"):
        ro.r("dfmr_aggregate(bad, G = 2)")
    assert ro.r('class(tryCatch(dfmr_aggregate(bad, G = 2), error = identity))[1]')[0] == "dfmr_python_error"


def test_plain_r_session_gives_the_same_object_as_the_embedded_one(activated, tmp_path):
    """reticulate (Rscript) and rpy2 (this process) carry the same call to the same Python code."""
    rds = tmp_path / "fit.rds"
    script = (f'suppressPackageStartupMessages(library(dfmr)); set.seed(3); x <- matrix(rnorm(600), 300); '
              f'x[1:150, ] <- x[1:150, ] + 5; saveRDS(dfmr_fit(x, G = 2, machines = 3, seed = 2), "{rds}")')
    env = {**os.environ, "RETICULATE_PYTHON": sys.executable}
    proc = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ro.r("set.seed(3); x <- matrix(rnorm(600), 300); x[1:150, ] <- x[1:150, ] + 5")
    ro.r("here <- dfmr_fit(x, G = 2, machines = 3, seed = 2)")
    ro.r(f'there <- readRDS("{rds}")')
    same = ro.r("all.equal(unclass(here)[names(here) != 'call'], unclass(there)[names(there) != 'call'],"
                " tolerance = 0)")
    assert list(same) == [True], list(same)


def test_missing_rpy2_and_missing_r_packages_raise_import_errors_naming_what_to_install(tmp_path):
    code = "import sys; sys.modules['rpy2'] = None\nimport dfmr.r\ndfmr.r.converter"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ImportError" in proc.stderr and "pip install 'dfmr[r]'" in proc.stderr
    env = {**os.environ, "R_LIBS_SITE": str(tmp_path), "R_LIBS": "", "R_LIBS_USER": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", "import dfmr.r; dfmr.r.activate()"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert "ImportError: the R package mclust is not installed" in proc.stderr, proc.stderr


def test_the_r_package_in_an_embedded_r_without_activate_says_to_activate():
    code = ("import rpy2.robjects as ro\n"
            "from rpy2.rinterface_lib.embedded import RRuntimeError\n"
            "try:\n"
            "    ro.r('suppressPackageStartupMessages(library(dfmr)); dfmr_fit(matrix(rnorm(40), 20), G = 1)')\n"
            "except RRuntimeError as exc:\n"
            "    print('R error:', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "R is running inside Python (rpy2): call dfmr.r.activate() in Python" in proc.stdout


def test_loading_the_r_package_does_not_start_python():
    """Delayed import, as CRAN's reticulate-based packages do: Python starts at the first call that needs it."""
    script = ('suppressPackageStartupMessages(library(dfmr)); cat(reticulate::py_available(), ""); '
              'cat(dfmr_available(), reticulate::py_available())')
    env = {**os.environ, "RETICULATE_PYTHON": sys.executable}
    proc = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["FALSE", "TRUE", "TRUE"]


IPYTHON_SESSION = r'''
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
cells = [
    "%load_ext rpy2.ipython",
    """
import json
import numpy as np
import dfmr, dfmr.r
from rpy2.robjects import default_converter, numpy2ri
conv = default_converter + numpy2ri.converter + dfmr.r.converter
mix = dfmr.GaussianMixtureParams([0.3, 0.7], [[0.0, 0.0], [4.0, 1.0]], [np.eye(2), [[2.0, 0.5], [0.5, 1.0]]])
X, _ = mix.sample(400, random_state=1)
""",
    """%%R -c conv -i mix,X -o density,mclust_fit,mclust_mean
suppressPackageStartupMessages(library(mclust))
density <- dens(data = X, modelName = mix$modelName, parameters = mix$parameters)
mclust_fit <- Mclust(X, G = 2, modelNames = "VVV", verbose = FALSE)
mclust_mean <- mclust_fit$parameters$mean
""",
    "dfmr.r.activate()",
    """%%R -c conv -i X -o fit,ci
fit <- dfmr_fit(X, G = 2, machines = 4, seed = 3)
ci <- confint(fit, type = "information", scale = "natural")
""",
    """
est = dfmr.DistributedGaussianMixture(2, n_machines=4, random_state=3, backend="threads").fit(X)
est.infer(X, method="information")
low, high = est.confidence_intervals(0.95)["means"]
out = {
    "density_error": float(np.max(np.abs(density - mix.pdf(X)) / mix.pdf(X))),
    "mclust_fit": type(mclust_fit).__name__,
    "mclust_means_error": float(np.max(np.abs(mclust_fit.means - np.asarray(mclust_mean).T))),
    "fit": type(fit).__name__,
    "fit_means_error": float(np.max(np.abs(fit.means - est.means_))),
    "ci_means_error": float(np.max(np.abs(np.asarray(ci)[1:5] - np.column_stack([low.ravel(), high.ravel()])))),
}
print("RESULT", json.dumps(out))
""",
]
for cell in cells:
    result = shell.run_cell(cell)
    if not result.success:
        raise SystemExit(f"cell failed: {cell[:60]!r}: {result.error_before_exec or result.error_in_exec!r}")
'''


def test_r_magics_convert_dfmr_objects_both_ways_in_ipython():
    """``%%R -c conv -i ... -o ...`` cells (rpy2's IPython magics) with dfmr.r.converter, in a real IPython
    shell: dfmr mixtures go in as mclust parameter lists, mclust and dfmr fits come out as mixtures."""
    proc = subprocess.run([sys.executable, "-c", IPYTHON_SESSION], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout + proc.stderr
    out = json.loads(line[0][len("RESULT "):])
    assert out["density_error"] < 1e-12  # mclust's density of the mixture sent in = dfmr's
    assert out["mclust_fit"] == "GaussianMixtureParams" and out["mclust_means_error"] == 0.0
    assert out["fit"] == "GaussianMixtureParams" and out["fit_means_error"] == 0.0
    assert out["ci_means_error"] < 1e-10
