"""Figures on generated embeddings: expected axes and artists, seeded subsampling, PNG output, no pyplot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection

from faceforget.report import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Before / after embeddings of 4 forget ids ("$x" among them) and 6 retain ids, 5 photos each."""
    rng = np.random.default_rng(1)
    labels = np.repeat(["f0", "f1", "$x", "<b>"] + [f"r{i}" for i in range(6)], 5)
    centres = {n: rng.standard_normal(8) for n in np.unique(labels)}
    before = np.stack([centres[n] for n in labels]) + 0.3 * rng.standard_normal((len(labels), 8))
    forget = np.isin(labels, ["f0", "f1", "$x", "<b>"])
    after = before.copy()
    after[forget] = rng.standard_normal((forget.sum(), 8))
    return before, after, labels, forget


def _legend(ax: object) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_tradeoff_scatter() -> None:
    points = [{"label": "dispersion (seed 0)", "method": "dispersion", "forget_mAP": 0.1, "retain_mAP": 0.9,
               "original": (0.8, 0.95), "chance": 0.05},
              {"label": "dispersion (seed 1)", "method": "dispersion", "forget_mAP": 0.12, "retain_mAP": 0.88,
               "original": (0.8, 0.95), "chance": 0.05},
              {"label": "neggrad", "forget_mAP": 0.4, "retain_mAP": 0.7}]
    fig = plots.tradeoff_scatter(points)
    (ax,) = fig.axes
    offsets = [c.get_offsets()[0].tolist() for c in ax.collections if isinstance(c, PathCollection)]
    assert offsets == [[0.1, 0.9], [0.12, 0.88], [0.4, 0.7], [0.8, 0.95]]  # runs, then one original star
    assert {t.get_text() for t in ax.texts} == {"dispersion (seed 0)", "dispersion (seed 1)", "neggrad"}
    colours = [tuple(c.get_facecolor()[0]) for c in ax.collections[:3]]
    assert colours[0] == colours[1] != colours[2]
    assert [line.get_xdata()[0] for line in ax.lines] == [0.05]
    assert _legend(ax) == ["original", "forget chance mAP"]
    assert "forget mAP" in ax.get_xlabel() and "retain mAP" in ax.get_ylabel()


def test_similarity_histograms(toy: tuple) -> None:
    before, after, labels, forget = toy
    fig = plots.similarity_histograms(before, after, labels, forget, max_pairs=50, seed=0)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["forget identities, before", "forget identities, after",
                                                   "retain identities, before", "retain identities, after"]
    for ax in fig.axes:
        assert len(ax.patches) == 2  # one stepfilled histogram each for genuine and impostor
    # 4 forget ids x C(5, 2) = 40 genuine pairs; 6 retain ids give 60, capped at 50; same pairs before/after
    assert _legend(fig.axes[0]) == _legend(fig.axes[1]) == ["genuine (n=40)", "impostor (n=50)"]
    assert _legend(fig.axes[2]) == _legend(fig.axes[3]) == ["genuine (n=50)", "impostor (n=50)"]


def test_similarity_histograms_seeded(toy: tuple) -> None:
    before, after, labels, forget = toy
    shapes = []
    for seed in (0, 0, 1):
        fig = plots.similarity_histograms(before, after, labels, forget, max_pairs=30, seed=seed)
        shapes.append(np.concatenate([p.get_path().vertices for ax in fig.axes for p in ax.patches]))
    np.testing.assert_array_equal(shapes[0], shapes[1])
    assert not np.array_equal(shapes[0], shapes[2])


def test_pair_indices_are_genuine_and_impostor(toy: tuple) -> None:
    _, _, labels, forget = toy
    genuine, impostor = plots._pair_indices(labels, forget, np.random.default_rng(0), 1000)
    assert len(genuine) == 40 and (genuine[:, 0] < genuine[:, 1]).all()
    assert (labels[genuine[:, 0]] == labels[genuine[:, 1]]).all() and forget[genuine].all()
    assert len(impostor) > 0 and (labels[impostor[:, 0]] != labels[impostor[:, 1]]).all()
    assert forget[impostor[:, 0]].all()


def test_projection_2d(toy: tuple) -> None:
    before, after, labels, forget = toy
    fig = plots.projection_2d(before, after, labels, forget)
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("before (original model)", "after (unlearned model)")
    for ax in (left, right):
        assert len(ax.collections) == 1 + 4  # retain grey, then one per forget identity
        assert ax.collections[0].get_offsets().shape == (30, 2)
    assert _legend(right) == ["retain", r"\$x", "<b>", "f0", "f1"]
    # PCA fitted on the original: its projection is centred; the retain rows did not move
    stacked = np.concatenate([c.get_offsets() for c in left.collections])
    np.testing.assert_allclose(stacked.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(left.collections[0].get_offsets(), right.collections[0].get_offsets())
    assert isinstance(fig.canvas, FigureCanvasAgg)
    assert plots.figure_to_png_bytes(fig).startswith(PNG_MAGIC)  # "$x" renders as text, not mathtext


def test_projection_2d_subsamples(toy: tuple) -> None:
    before, after, labels, forget = toy
    fig = plots.projection_2d(before, after, labels, forget, max_points=7, seed=3)
    assert fig.axes[0].collections[0].get_offsets().shape == (7, 2)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections[1:]) == 7


def test_loss_curves() -> None:
    history = [{"unif": 1.0 / (s + 1), "keep": 0.1 * s, "total": 1.0 / (s + 1) + 0.1 * s} for s in range(5)]
    (ax,) = plots.loss_curves(history).axes
    assert [line.get_label() for line in ax.lines] == ["unif", "keep", "total"]
    assert ax.lines[-1].get_color() == "black"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.0, 0.1, 0.2, 0.3, 0.4])
    (empty,) = plots.loss_curves([]).axes
    assert [t.get_text() for t in empty.texts] == ["no loss history"]


def test_png_bytes_and_atomic_save(tmp_path: Path) -> None:
    fig = plots.loss_curves([{"total": 1.0}, {"total": 0.5}])
    png = plots.figure_to_png_bytes(fig)
    assert png.startswith(PNG_MAGIC)
    plots.save_figure(fig, tmp_path / "sub" / "loss.png")
    assert (tmp_path / "sub" / "loss.png").read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["loss.png"]


def test_import_leaves_pyplot_alone() -> None:
    code = "import sys, faceforget.report.plots; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
