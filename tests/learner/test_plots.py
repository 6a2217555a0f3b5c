"""SVG plots from plain numbers: well-formed, titled axes, readable when there is nothing to plot."""
from datetime import date, timedelta
from xml.etree import ElementTree

from learner.ml import plots

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    """Every text element of the SVG (text stays text: svg.fonttype none)."""
    root = ElementTree.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("viewBox") and root.get("width") is None
    return ["".join(node.itertext()).strip() for node in root.iter(f"{SVG}text")]


def test_learning_curve_has_titled_axes_and_marks_each_version():
    points = [plots.CurvePoint(1, 40, 0.71, 0.6, 0.8), plots.CurvePoint(2, 90, 0.86, 0.79, 0.91, live=True)]
    words = texts(plots.learning_curve_svg(points, title="Audit accuracy by version"))
    assert {"labels used for training", "audit accuracy", "Audit accuracy by version", "v1", "v2", "live"} <= set(words)


def test_confusion_matrix_shows_counts_and_class_names():
    words = texts(plots.confusion_matrix_svg([[8, 2], [1, 9]], ["cat", "dog"], title="v3 on 20 audit labels"))
    assert {"predicted label", "expert label", "v3 on 20 audit labels", "cat", "dog", "8", "2", "1", "9"} <= set(words)


def test_labels_per_day_stacks_experts_with_a_legend():
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(7)]
    words = texts(plots.labels_per_day_svg(days, {"ana": [3, 0, 1, 0, 0, 2, 5], "ben": [0] * 7}))
    assert {"day", "labels", "Labels per day", "ana", "ben", "11-01"} <= set(words)


def test_empty_plots_say_there_is_nothing_yet():
    assert "no evaluated version yet" in texts(plots.learning_curve_svg([]))
    days = [date(2026, 11, 1)]
    assert "no labels in this period" in texts(plots.labels_per_day_svg(days, {}))


def test_the_same_data_gives_the_same_svg():
    points = [plots.CurvePoint(1, 40, 0.7, 0.6, 0.8)]
    assert plots.learning_curve_svg(points) == plots.learning_curve_svg(points)


# Names people chose (labels, user names) are drawn as written: matplotlib reads text between two `$` as math.
HOSTILE_NAMES = ["$\\foo$", "$x^$", "$$", "a$b$c", "\\$", "$\\frac{1}{0}$", "<script>alert(1)</script>", "&amp;", "%s{}",
                 "\\", "ⅎ 𝕏 😀"]


def test_hostile_class_names_are_drawn_as_written():
    words = texts(plots.confusion_matrix_svg(
        [[1] * len(HOSTILE_NAMES)] * len(HOSTILE_NAMES), HOSTILE_NAMES, title="v1 on 121 audit labels"
    ))
    assert set(HOSTILE_NAMES) <= set(words)


def test_hostile_expert_names_are_drawn_as_written():
    words = texts(plots.labels_per_day_svg([date(2026, 11, 1)], {name: [1] for name in HOSTILE_NAMES}))
    assert set(HOSTILE_NAMES) <= set(words)
