import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from cellgen.plotting import (  # noqa: E402
    composite,
    plot_channels,
    plot_history,
    plot_image_grid,
    plot_latent_ranking,
    plot_reconstructions,
    project,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.get_images()]


# --------------------------------------------------------------------------- #
# project
# --------------------------------------------------------------------------- #
def test_project_matches_numpy_max(rng):
    images = rng.random((3, 2, 5, 7, 9))
    top = project(images)
    side = project(images, axis="x")
    assert top.shape == (3, 2, 7, 9)
    assert side.shape == (3, 2, 5, 7)
    np.testing.assert_array_equal(top, images.max(axis=2))
    np.testing.assert_array_equal(side, images.max(axis=4))
    np.testing.assert_allclose(project(images, method="mean"), images.mean(axis=2))


def test_project_2d_unchanged_and_errors(rng):
    images = rng.random((2, 3, 8, 8))
    np.testing.assert_array_equal(project(images), images)
    with pytest.raises(ValueError, match="axis"):
        project(images, axis="x")
    with pytest.raises(ValueError, match="axis"):
        project(rng.random((2, 3, 4, 8, 8)), axis="y")
    with pytest.raises(ValueError, match="method"):
        project(images, method="median")
    with pytest.raises(ValueError, match="images"):
        project(rng.random((3, 8, 8)))
    with pytest.raises(TypeError, match="images"):
        project(np.full((1, 1, 2, 2), "a"))


# --------------------------------------------------------------------------- #
# composite
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "channel, expected",
    [(0, [1, 0, 1]), (1, [0, 1, 1]), (2, [1, 1, 0])],
)
def test_composite_pure_channel_colour(channel, expected):
    images = np.zeros((1, 3, 6, 6))
    images[0, channel, 2, 3] = 1.0
    rgb = composite(images)
    assert rgb.shape == (1, 6, 6, 3)
    np.testing.assert_allclose(rgb[0, 2, 3], expected)
    np.testing.assert_allclose(rgb[0, 0, 0], [0, 0, 0])


def test_composite_single_channel_grey_and_3d_projection():
    images = np.zeros((2, 1, 4, 5, 5))
    images[1, 0, 3, 2, 2] = 0.5
    rgb = composite(images)
    assert rgb.shape == (2, 5, 5, 3)
    np.testing.assert_allclose(rgb[1, 2, 2], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(rgb[0], 0.0)


def test_composite_blends_clips_and_normalizes():
    images = np.zeros((1, 3, 2, 2))
    images[0, 0, 0, 0] = 3.0  # above the window: saturates
    images[0, 1, 0, 0] = 1.0
    images[0, 2, 1, 1] = 0.25
    rgb = composite(images)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    np.testing.assert_allclose(rgb[0, 0, 0], [1, 1, 1])  # magenta + cyan
    np.testing.assert_allclose(rgb[0, 1, 1], [0.25, 0.25, 0])
    np.testing.assert_allclose(composite(images, normalize=True)[0, 1, 1], [1, 1, 0])
    np.testing.assert_allclose(
        composite(images, colors=["red", "green", (0, 0, 1)])[0, 1, 1], [0, 0, 0.25]
    )
    np.testing.assert_allclose(composite(images, clip=(0, 0.5))[0, 1, 1], [0.5, 0.5, 0])


def test_composite_many_channels_distinct_colours():
    images = np.eye(5).reshape(5, 5, 1, 1)  # cell i lights channel i only
    rgb = composite(images)[:, 0, 0]
    assert len({tuple(c) for c in rgb.tolist()}) == 5


def test_composite_bad_inputs():
    images = np.zeros((1, 3, 4, 4))
    with pytest.raises(ValueError, match="colors"):
        composite(images, colors=[(1, 0, 0), (0, 1, 0)])
    with pytest.raises(ValueError, match="colors"):
        composite(images, colors=["red", "green", "not-a-colour"])
    with pytest.raises(ValueError, match="clip"):
        composite(images, clip=(1, 0))
    with pytest.raises(ValueError, match="images"):
        composite(np.zeros((0, 3, 4, 4)))
    with pytest.raises(ValueError, match="images"):
        composite(np.zeros((4, 4)))


# --------------------------------------------------------------------------- #
# grids
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "shape, kwargs, n_axes",
    [
        ((5, 3, 8, 8), {}, 5),  # flat 2D
        ((10, 3, 8, 8), {}, 10),  # wraps after 8 columns
        ((5, 3, 8, 8), {"ncols": 2}, 5),
        ((4, 3, 4, 8, 8), {}, 4),  # flat 3D
        ((4, 3, 4, 8, 8), {"side_view": True}, 8),
        ((2, 3, 3, 8, 8), {"spatial_ndim": 2}, 6),  # grid 2D
        ((2, 3, 2, 4, 8, 8), {}, 6),  # grid 3D
        ((2, 3, 2, 4, 8, 8), {"side_view": True}, 12),
    ],
)
def test_grid_axes_count(rng, shape, kwargs, n_axes):
    fig = plot_image_grid(rng.random(shape), **kwargs)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    assert len(_image_axes(fig)) == n_axes


def test_grid_layout_rows_and_side_view_doubles_rows(rng):
    images = rng.random((2, 3, 2, 4, 8, 8))
    gs = plot_image_grid(images).axes[0].get_subplotspec().get_gridspec()
    assert (gs.nrows, gs.ncols) == (2, 3)
    fig = plot_image_grid(images, side_view=True)
    gs = fig.axes[0].get_subplotspec().get_gridspec()
    assert (gs.nrows, gs.ncols) == (4, 3)
    # The side view of a cell sits right under its top view and shows the
    # max over x, (Z, Y), with z upwards.
    side = fig.axes[1]
    assert side.get_subplotspec().rowspan.start == 1
    assert side.get_images()[0].get_array().shape == (4, 8, 3)
    flat = plot_image_grid(rng.random((10, 3, 8, 8)), ncols=4)
    gs = flat.axes[0].get_subplotspec().get_gridspec()
    assert (gs.nrows, gs.ncols) == (3, 4)


def test_grid_titles_labels_and_channels(rng):
    images = rng.random((2, 2, 3, 8, 8))
    fig = plot_image_grid(
        images,
        spatial_ndim=2,
        titles=[["a", "b"], ["c", "d"]],
        row_labels=["r0", "r1"],
        channels=[2],
    )
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c", "d"]
    assert fig.axes[0].get_ylabel() == "r0"
    assert fig.axes[2].get_ylabel() == "r1"
    # One selected channel is drawn in grey.
    rgb = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(rgb[..., 0], rgb[..., 1])
    np.testing.assert_allclose(rgb[..., 0], images[0, 0, 2], rtol=1e-6)


def test_grid_channels_keep_their_default_colour():
    images = np.zeros((1, 3, 4, 4))
    images[0, 2, 1, 1] = 1.0
    fig = plot_image_grid(images, channels=[0, 2])
    rgb = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(rgb[1, 1], [1, 1, 0])  # structure stays yellow


def test_grid_draws_into_given_figure(rng):
    fig = Figure()
    out = plot_image_grid(rng.random((3, 3, 8, 8)), fig=fig)
    assert out is fig and len(fig.axes) == 3


def test_grid_bad_inputs(rng):
    images = rng.random((4, 3, 8, 8))
    with pytest.raises(ValueError, match="images"):
        plot_image_grid(rng.random((8, 8)))
    with pytest.raises(ValueError, match="images"):
        plot_image_grid(np.zeros((0, 3, 8, 8)))
    with pytest.raises(ValueError, match="side_view"):
        plot_image_grid(images, side_view=True)
    with pytest.raises(ValueError, match="titles"):
        plot_image_grid(images, titles=["a"])
    with pytest.raises(ValueError, match="row_labels"):
        plot_image_grid(images, row_labels=["a", "b"])
    with pytest.raises(ValueError, match="colors"):
        plot_image_grid(images, colors=["red"])
    with pytest.raises(ValueError, match="channels"):
        plot_image_grid(images, channels=[3])
    with pytest.raises(ValueError, match="channels"):
        plot_image_grid(images, channels=[])
    with pytest.raises(ValueError, match="ncols"):
        plot_image_grid(images, ncols=0)
    with pytest.raises(TypeError, match="ncols"):
        plot_image_grid(images, ncols=2.5)
    with pytest.raises(ValueError, match="ncols"):
        plot_image_grid(rng.random((2, 2, 3, 4, 8, 8)), ncols=3)
    with pytest.raises(ValueError, match="spatial_ndim"):
        plot_image_grid(images, spatial_ndim=3)


def test_reconstructions_two_rows_same_scaling(rng):
    originals = rng.random((6, 3, 8, 8))
    fig = plot_reconstructions(originals, 0.5 * originals, n=4, normalize=True)
    assert len(fig.axes) == 8
    assert fig.axes[0].get_ylabel() == "original"
    assert fig.axes[4].get_ylabel() == "reconstruction"
    top = fig.axes[0].get_images()[0].get_array()
    bottom = fig.axes[4].get_images()[0].get_array()
    # Scaled by the originals' maxima, a half-bright reconstruction stays dimmer.
    assert bottom.max() < top.max()
    fig3d = plot_reconstructions(
        rng.random((2, 3, 4, 8, 8)), rng.random((2, 3, 4, 8, 8)), side_view=True
    )
    assert len(fig3d.axes) == 8


def test_grid_options_pass_through_without_clashing(rng):
    # The wrappers' own defaults (row labels, spatial_ndim) give way to the caller's.
    fig = plot_reconstructions(rng.random((3, 2, 8, 8)), rng.random((3, 2, 8, 8)),
                               row_labels=["cell", "model"], spatial_ndim=2)
    assert [fig.axes[0].get_ylabel(), fig.axes[3].get_ylabel()] == ["cell", "model"]
    from cellgen.plotting import plot_latent_walk

    assert len(plot_latent_walk(rng.random((2, 5, 2, 8, 8)), spatial_ndim=2).axes) == 10


def test_missing_values_are_drawn_or_skipped_not_lost(rng):
    from cellgen.plotting import plot_coupling, plot_effect_scatter

    # Cells without a group are one group of their own, counted in the legend.
    fig = plot_effect_scatter(rng.random((6, 3)),
                              pd.Series(["x", "x", "y", "y", np.nan, np.nan]))
    assert [len(c.get_offsets()) for c in fig.axes[0].collections] == [2, 2, 2]
    # A reference whose couplings are all NaN: nothing to draw, but no KeyError.
    c = pd.DataFrame({"cell": [0, 0, 1, 1], "structure": "a",
                      "reference": ["membrane", "DNA"] * 2,
                      "coupling": [0.9, np.nan, 0.8, np.nan]})
    assert len(plot_coupling(c).axes) == 1


def test_edge_tables_give_honest_figures(rng):
    from cellgen.analysis import rank_latent_dimensions
    from cellgen.plotting import (
        plot_differential_coupling,
        plot_latent_ranking,
        plot_rate_distortion,
    )

    # A row whose phase is missing still gets its bar.
    d = pd.DataFrame({"structure": ["a", "a"], "cell_cycle_phase": ["interphase", np.nan],
                      "differential_coupling": [0.5, 0.2]})
    bars = plot_differential_coupling(d).axes[0].patches
    assert sorted(round(b.get_height(), 6) for b in bars) == [0.2, 0.5]
    # Without log-variances there is no KL, and no empty KL axis either.
    assert len(plot_latent_ranking(rank_latent_dimensions(rng.random((20, 4)))).axes) == 1
    with pytest.raises(ValueError, match="sweep is empty"):
        plot_rate_distortion(pd.DataFrame(columns=["beta", "rate", "distortion"]))


def test_many_channels_and_structures_keep_distinct_colours(rng):
    from cellgen.plotting import plot_coupling
    from cellgen.plotting._images import _default_colors

    colours = {tuple(np.round(c, 3)) for c in _default_colors(16, None)}
    assert len(colours) == 16
    n = 25  # more structures than tab20 has colours
    c = pd.DataFrame({"cell": np.repeat(np.arange(n), 2),
                      "structure": np.repeat([f"s{i}" for i in range(n)], 2),
                      "reference": ["membrane", "DNA"] * n, "coupling": rng.random(2 * n)})
    drawn = {tuple(np.round(p.get_facecolor()[0][:3], 3))
             for p in plot_coupling(c).axes[0].collections}
    assert len(drawn) == n


def test_reconstructions_bad_inputs(rng):
    with pytest.raises(ValueError, match="same shape"):
        plot_reconstructions(rng.random((4, 3, 8, 8)), rng.random((4, 3, 8, 6)))
    with pytest.raises(ValueError, match="reconstructions"):
        plot_reconstructions(rng.random((4, 3, 8, 8)), rng.random((3, 8, 8)))
    with pytest.raises(ValueError, match="n"):
        plot_reconstructions(rng.random((4, 3, 8, 8)), rng.random((4, 3, 8, 8)), n=0)


def test_plot_channels(rng):
    images = rng.random((5, 3, 4, 8, 8))
    fig = plot_channels(images, n=3, channel_names=["membrane", "DNA", "structure"])
    assert len(fig.axes) == 9
    assert [fig.axes[i].get_ylabel() for i in (0, 3, 6)] == [
        "membrane",
        "DNA",
        "structure",
    ]
    rgb = fig.axes[3].get_images()[0].get_array()  # DNA of cell 0, grey
    np.testing.assert_allclose(rgb[..., 2], images[0, 1].max(axis=0), rtol=1e-6)
    fig = plot_channels(images, channels=2, channel_names=["structure"])
    assert len(fig.axes) == 5
    with pytest.raises(ValueError, match="channel_names"):
        plot_channels(images, channel_names=["a", "b"])
    # The data's names with a selection that reorders every channel: each row keeps
    # the name of the channel it shows.
    flat = np.ones((2, 3, 8, 8)) * np.array([0.2, 0.5, 0.9])[None, :, None, None]
    fig = plot_channels(flat, n=1, channels=[2, 0, 1], channel_names=["membrane", "DNA",
                                                                      "structure"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["structure", "membrane", "DNA"]
    assert fig.axes[0].get_images()[0].get_array()[0, 0, 0] == pytest.approx(0.9)


def test_nan_voxels_and_bfloat16_tensors():
    import torch

    cell = np.zeros((1, 1, 4, 5, 5), np.float32)
    cell[0, 0, :, 2, 2] = 0.8
    cell[0, 0, 3] = np.nan  # one bad plane must not blank the top view
    np.testing.assert_allclose(composite(cell)[0, 2, 2], 0.8)
    assert np.isnan(project(np.full((1, 1, 2, 3, 3), np.nan))).all()
    bright = np.zeros((1, 1, 2, 2), np.float32)
    bright[0, 0, 0, 0] = np.inf
    assert composite(bright)[0, 0, 0].tolist() == [1.0, 1.0, 1.0]  # saturated, not black
    tensor = torch.rand(2, 3, 8, 8)
    np.testing.assert_allclose(composite(tensor.bfloat16()),
                               composite(tensor.bfloat16().float()))


# --------------------------------------------------------------------------- #
# latent ranking and history
# --------------------------------------------------------------------------- #
def test_latent_ranking_orders_bars_descending():
    ranking = pd.DataFrame(
        {"dimension": [0, 1, 2, 3, 4], "mad": [0.2, 0.9, 0.05, 0.5, 0.7]}
    )
    fig = plot_latent_ranking(ranking, top=4)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches if isinstance(p, Rectangle)]
    assert heights == [0.9, 0.7, 0.5, 0.2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4", "3", "0"]


def test_latent_ranking_with_kl_and_given_axes():
    ranking = pd.DataFrame(
        {"dimension": [0, 1, 2], "mad": [0.1, 0.3, 0.2], "kl": [0.5, 2.0, 1.0]}
    )
    fig = Figure()
    ax = fig.add_subplot()
    out = plot_latent_ranking(ranking, ax=ax)
    assert out is fig
    assert len(fig.axes) == 2  # bars plus the KL twin axis
    kl_line = fig.axes[1].get_lines()[0]
    np.testing.assert_allclose(kl_line.get_ydata(), [2.0, 1.0, 0.5])


def test_latent_ranking_bad_inputs():
    with pytest.raises(ValueError, match="mad"):
        plot_latent_ranking(pd.DataFrame({"dimension": [0, 1]}))
    with pytest.raises(ValueError, match="ranking"):
        plot_latent_ranking(pd.DataFrame({"dimension": [], "mad": []}))
    with pytest.raises(TypeError, match="ranking"):
        plot_latent_ranking(np.zeros(3))
    with pytest.raises(ValueError, match="top"):
        plot_latent_ranking(pd.DataFrame({"dimension": [0], "mad": [1.0]}), top=0)


@pytest.fixture
def history():
    return pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "train_loss": [4.0, 3.0, 2.5, 2.2],
            "valid_loss": [4.2, 3.3, 2.9, 2.8],
            "train_reconstruction": [3.8, 2.7, 2.1, 1.8],
            "train_kl": [0.2, 0.3, 0.4, 0.4],
            "dur": [1.0, 1.1, 0.9, 1.0],
            "valid_loss_best": [True, True, True, True],
        }
    )


def _n_lines(fig):
    return sum(len([ln for ln in ax.get_lines() if isinstance(ln, Line2D)])
               for ax in fig.axes)


def test_history_one_line_per_key_two_panels(history):
    fig = plot_history(history)
    assert len(fig.axes) == 2
    assert _n_lines(fig) == 4
    labels = {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}
    assert labels == {"train_loss", "valid_loss", "train_reconstruction", "train_kl"}
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_xdata(), [1, 2, 3, 4])


def test_history_keys_and_single_axes(history):
    fig = plot_history(history, keys=["train_loss"])
    assert len(fig.axes) == 1 and _n_lines(fig) == 1
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_history(history, ax=ax) is fig
    assert _n_lines(fig) == 4
    with pytest.raises(ValueError, match="keys"):
        plot_history(history, keys=["nope"])
    with pytest.raises(ValueError, match="keys"):
        plot_history(history, keys=[])
    with pytest.raises(ValueError, match="history"):
        plot_history(history.iloc[:0])
    with pytest.raises(TypeError, match="history"):
        plot_history("history.csv")


def test_history_from_skorch_like_records():
    records = [
        {"epoch": 1, "train_loss": 2.0, "batches": [{"loss": 2.0}]},
        {"epoch": 2, "train_loss": 1.0, "batches": [{"loss": 1.0}]},
    ]
    assert _n_lines(plot_history(records)) == 1


# --------------------------------------------------------------------------- #
# saving
# --------------------------------------------------------------------------- #
def test_figures_save_to_png(tmp_path, rng, history):
    ranking = pd.DataFrame({"dimension": range(6), "mad": rng.random(6),
                            "kl": rng.random(6)})
    images = rng.random((3, 3, 4, 8, 8))
    figures = {
        "grid": plot_image_grid(images, side_view=True, titles=["a", "b", "c"],
                                row_labels=["row"]),
        "recon": plot_reconstructions(images, images, n=2),
        "channels": plot_channels(images, n=2),
        "ranking": plot_latent_ranking(ranking),
        "history": plot_history(history),
    }
    for name, fig in figures.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path, dpi=40)
        assert path.stat().st_size > 0
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
