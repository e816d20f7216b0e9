"""Tests of dfmr.plots: every figure renders to PNG and shows what it is named after."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

import dfmr
from dfmr import inference, plots, simulate
from dfmr.params import GaussianMixtureParams

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def attacked_fixture():
    attacked, bad = simulate.attack(simulate.local_estimates_fixture(), 0.2, kind="mean", random_state=0)
    res = dfmr.dfmr(attacked, 5)
    return attacked, bad, res, inference.infer(res, attacked, n_samples=5000)


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    return buf.getvalue()


def test_distance_matrix_marks_filtered_machines_and_the_centre(attacked_fixture):
    _, bad, res, _ = attacked_fixture
    fig = plots.plot_distance_matrix(res)
    assert png(fig).startswith(PNG)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), res.distances)
    red = [int(t.get_text()) for t in ax.get_yticklabels() if t.get_color() == "tab:red"]
    assert red == sorted(set(range(res.n_machines)) - set(res.retained.tolist())) == bad.tolist()
    bold = [int(t.get_text()) for t in ax.get_xticklabels() if t.get_fontweight() == "bold"]
    assert bold == [res.center]


def test_center_distances_show_the_cutoff(attacked_fixture):
    _, bad, res, _ = attacked_fixture
    fig = plots.plot_center_distances(res)
    assert png(fig).startswith(PNG)
    ax = fig.axes[0]
    heights = {}
    for container, label in zip(ax.containers, ("retained", "filtered")):
        heights[label] = [bar.get_height() for bar in container]
    np.testing.assert_allclose(sorted(heights["filtered"]), sorted(res.distance_to_center[bad]))
    levels = [line.get_ydata()[0] for line in ax.get_lines()]
    assert res.filter.cutoff in levels and res.filter.radius in levels
    assert all(d > res.filter.cutoff for d in heights["filtered"])


def test_machine_pvalues_plot_the_adjusted_p_values(attacked_fixture):
    _, bad, _, inf_res = attacked_fixture
    fig = plots.plot_machine_pvalues(inf_res)
    assert png(fig).startswith(PNG)
    ax = fig.axes[0]
    bars = [b for c in ax.containers for b in c]
    assert len(bars) == 20
    filtered = sorted(b.get_x() + b.get_width() / 2 for b in ax.containers[1])
    np.testing.assert_allclose(filtered, bad)
    assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(-np.log10(0.05))
    with pytest.raises(ValueError, match="no per-machine tests"):
        plots.plot_machine_pvalues(inference.infer(dfmr.dfmr(attacked_fixture[0], 5), attacked_fixture[0]))


def test_plots_refuse_aggregations_without_distances(attacked_fixture):
    res = dfmr.mr(simulate.local_estimates_fixture(), 5)
    with pytest.raises(ValueError, match="no distances"):
        plots.plot_distance_matrix(res)


def test_ellipses_of_a_2d_fit_with_confidence_regions_for_the_means():
    truth = GaussianMixtureParams([0.5, 0.5], [[-3.0, 0.0], [3.0, 1.0]], [np.eye(2), [[1.0, 0.6], [0.6, 2.0]]])
    X, _ = truth.sample(8000, 1)
    est = dfmr.DistributedGaussianMixture(2, n_machines=8, backend="serial", random_state=0).fit(X)
    res = est.infer(X, method="information")
    fig = plots.plot_ellipses(est.aggregation_, est.local_mixtures_, X, res)
    assert png(fig).startswith(PNG)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 8 * 2 + 2  # every local component, then the aggregate's
    # An aggregate ellipse is the 95% contour of its Gaussian: Mahalanobis radius sqrt(chi2_2(0.95)).
    x, y = lines[-1].get_data()
    k = 1
    d = np.stack([x, y]) - est.means_[k][:, None]
    r2 = np.einsum("in,ij,jn->n", d, np.linalg.inv(est.covariances_[k]), d)
    np.testing.assert_allclose(r2, stats.chi2(2).ppf(0.95), rtol=1e-8)
    regions = ax.patches
    assert len(regions) == 2
    region = regions[0].get_xy()
    cov = res.cov_params().loc[["mu[1][1]", "mu[1][2]"], ["mu[1][1]", "mu[1][2]"]].to_numpy()
    d = region.T - est.means_[0][:, None]
    np.testing.assert_allclose(np.einsum("in,ij,jn->n", d, np.linalg.inv(cov), d), stats.chi2(2).ppf(0.95), rtol=1e-6)
    assert len(ax.collections) == 1  # the data sample


def test_ellipses_choose_a_pair_of_coordinates():
    mix = simulate.population()
    fig = plots.plot_ellipses(mix, dims=(2, 7))
    assert png(fig).startswith(PNG)
    assert fig.axes[0].get_xlabel() == "x3" and fig.axes[0].get_ylabel() == "x8"
    with pytest.raises(ValueError, match="two different coordinates"):
        plots.plot_ellipses(mix, dims=(1, 1))
