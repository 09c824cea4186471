"""The report's charts, drawn with leather as inline SVG (no file, no server, no network).

leather rather than matplotlib: four bar charts cost matplotlib about a second per run (its import
and text layout), a noticeable share of a short run; leather, pure Python, draws them in 0.06 s."""

import leather

WIDTH = 640
BAR_COLOR = "#4c78a8"
LABEL_CHARACTERS = 40  # a label is any text an analyser gave (an LLM's, say); longer ones do not fit


def bar_chart_svg(values: dict[str, int | float], title: str) -> str:
    """A horizontal bar chart of label -> number, as an <svg> element."""
    chart = leather.Chart(title)
    chart.add_bars([(value, str(label)[:LABEL_CHARACTERS]) for label, value in values.items()], fill_color=BAR_COLOR)
    return chart.to_svg(width=WIDTH, height=45 * len(values) + 110)


def dots_chart_svg(points: dict[str, tuple[float, float]], title: str, x_name: str, y_name: str) -> str:
    """A scatter of label -> (x, y), each dot labelled in the title's legend order, as an <svg> element."""
    chart = leather.Chart(title)
    for index, (label, (x, y)) in enumerate(points.items()):
        chart.add_dots([(x, y)], name=str(label)[:LABEL_CHARACTERS], fill_color=PALETTE[index % len(PALETTE)], radius=6)
    chart.add_x_axis(name=x_name)
    chart.add_y_axis(name=y_name)
    return chart.to_svg(width=WIDTH, height=360)


PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
