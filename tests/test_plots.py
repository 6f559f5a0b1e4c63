"""The per-pair figure: a category legend, teacher and vanilla lines, methods grouped by category in the one
taxonomy order and palette of every figure, bars equal to the seed means, the whole 0–100 axis."""
import statistics

import matplotlib.colors as mcolors
import pytest

from kdsuite.analysis.plots import category_colours, pairs_figure, plot_pairs
from kdsuite.analysis.tables import runs_frame
from kdsuite.methods.registry import CATEGORIES, get_method, method_display_name
from tests.test_tables import SYNTH


def test_per_pair_plot_has_legend_teacher_line_category_order_and_full_axis(tmp_path):
    import matplotlib.pyplot as plt

    df = runs_frame(SYNTH)
    fig = pairs_figure(df, "last_top1")
    try:
        ax = fig.axes[0]  # resnet20 → resnet8: vanilla, kd, dkd, fitnet_1stage, dml
        assert ax.get_title() == "ResNet20→ResNet8"
        # methods grouped by category in taxonomy order (the registry's), by name inside a category
        order = list(CATEGORIES)
        methods = sorted({r["method"] for r in SYNTH if r["student"] == "cifar_resnet8"} - {"vanilla"},
                         key=lambda m: (order.index(get_method(m).category), m))
        assert [t.get_text() for t in ax.get_xticklabels()] == [method_display_name(m) for m in methods]
        # bar heights = seed means, computed here from the records; colours = the one palette
        bars = ax.patches
        palette = category_colours()
        for bar, m in zip(bars, methods):
            vals = [r["metrics"]["last_top1"] for r in SYNTH if r["method"] == m and r["student"] == "cifar_resnet8"]
            assert bar.get_height() == pytest.approx(statistics.mean(vals))
            assert mcolors.to_rgba(bar.get_facecolor()) == mcolors.to_rgba(palette[get_method(m).category])
        # the teacher (dotted) and vanilla (dashed) reference lines at their values
        lines = {ln.get_linestyle(): ln.get_ydata()[0] for ln in ax.get_lines()}
        vanilla = statistics.mean(r["metrics"]["last_top1"] for r in SYNTH
                                  if r["method"] == "vanilla" and r["student"] == "cifar_resnet8")
        assert lines[":"] == pytest.approx(90.0) and lines["--"] == pytest.approx(vanilla)
        # y axis: the whole accuracy scale, not truncated to exaggerate differences
        assert ax.get_ylim() == (0.0, 100.0) and fig.axes[1].get_ylim() == (0.0, 100.0)
        # one legend: the categories shown (taxonomy order), then the vanilla and teacher lines
        legend = fig.axes[-1].get_legend()
        texts = [t.get_text() for t in legend.get_texts()]
        cats = [c for c in order if c in {get_method(m).category for m in methods}]
        assert texts[:len(cats)] == [CATEGORIES[c].title for c in cats]
        assert texts[len(cats):] == ["vanilla student", "teacher"]
        values = [t.get_text() for t in ax.texts]  # each panel writes its own line values
        assert f"{vanilla:.2f}" in values and "90.00" in values
        assert legend.get_texts()[0].get_fontsize() >= 8  # legible, not 6-pt
    finally:
        plt.close(fig)
    (png,) = plot_pairs(df, tmp_path, formats=("png",))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
