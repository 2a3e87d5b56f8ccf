"""Figures readable at a glance: counting axes get whole-number ticks, grids carry titles and class names."""
import numpy as np

from vaelab.plots import integer_ticks, new_figure
from vaelab.use.outputs import class_names


def _ticks(xs):
    fig, ax = new_figure()
    ax.plot(xs, [1.0] * len(xs), marker="o")
    integer_ticks(ax.xaxis, xs)
    lo, hi = ax.get_xlim()
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def test_counting_axes_get_whole_number_ticks():
    assert _ticks([0]) == [0]  # one generation: one tick, not -0.04 ... 0.04
    assert _ticks([1, 2]) == [1, 2]  # a 2-epoch run: 1 and 2, not 1.0, 1.2, ...
    ticks = _ticks(list(range(1, 61)))
    assert all(float(t).is_integer() for t in ticks) and 2 <= len(ticks) <= 11


def test_class_names_come_from_the_data_when_it_has_them():
    from vaelab.data.spec import DataSpec

    spec = DataSpec((1, 28, 28), num_classes=3, class_names=("T-shirt/top", "Trouser", "Pullover"))
    assert class_names(spec, 3) == ["T-shirt/top", "Trouser", "Pullover"]
    assert class_names(DataSpec((1, 8, 8), num_classes=2), 2) == ["0", "1"]


def test_grids_are_titled_and_legible(tmp_path):
    from PIL import Image

    from vaelab.use.outputs import write_grid

    write_grid(tmp_path / "g.png", np.random.default_rng(0).random((16, 1, 8, 8)), 8, title="t",
               row_labels=["original", "reconstruction"])
    assert Image.open(tmp_path / "g.png").size[0] >= 500  # 8x8 digits enlarged, not a 73-pixel strip
