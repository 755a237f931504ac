"""The headline figure's difference panel: each value reads as its own point's, not the original
study's diamond beside it (a user read "-0.083" as the diamond's, which sat at +0.076)."""

from __future__ import annotations

from test_report import kept_figures, make_results  # noqa: F401  (the fixture is used by name)


def test_the_difference_is_written_over_its_point_not_beside_the_original(kept_figures):  # noqa: F811
    res = make_results()
    fig = kept_figures.headline_figure(res)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    bx = fig.axes[1]
    diamonds = [ln for ln in bx.get_lines() if ln.get_marker() == "D"]
    assert diamonds, "the fixture carries the original study's numbers"
    for row_i, row in enumerate(res["headline"]):
        value = row["difference"]["value"]
        label = next(t for t in bx.texts if t.get_text() == f"{value:+.3f}")
        box = label.get_window_extent(r)
        point = bx.transData.transform((value, len(res["headline"]) - 1 - row_i))
        centre = (box.x0 + box.x1) / 2
        assert abs(centre - point[0]) < 2 and box.y0 > point[1]  # centred over its own point
