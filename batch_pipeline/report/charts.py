"""The report's charts, drawn with leather as inline SVG (no file, no server, no network).

leather rather than matplotlib: four bar charts cost matplotlib about a second per run (its import
and text layout), a noticeable share of a short run; leather, pure Python, draws them in 0.06 s."""

import math

import leather

WIDTH = 440
BAR_COLOR = "#4c78a8"
LABEL_CHARACTERS = 40  # a label is any text an analyser gave (an LLM's, say); longer ones do not fit
# From least to most severe: a field's enum values (rank_by) take these colours in their order.
SEVERITY_COLORS = ("#54a24b", "#e9b824", "#f58518", "#d62728")
TICKS = 5


def bar_chart_svg(values: dict[str, int | float], title: str, colors: dict[str, str] | None = None) -> str:
    """A horizontal bar chart of label -> number, as an <svg> element; bars coloured by label where
    ``colors`` says, counts on whole-number ticks."""
    if not values:
        return ""  # leather cannot draw an empty chart
    chart = leather.Chart(title)
    data = [(value, str(label)[:LABEL_CHARACTERS]) for label, value in values.items()]
    fill = (lambda datum: colors.get(datum.y, BAR_COLOR)) if colors else BAR_COLOR
    chart.add_bars(data, fill_color=fill)
    if values and all(isinstance(v, int) for v in values.values()):
        step = whole_step(max(values.values()))
        top = step * math.ceil(max(max(values.values()), 1) / step)
        chart.add_x_scale(0, top)
        chart.add_x_axis(ticks=list(range(0, top + 1, step)))
    return chart.to_svg(width=WIDTH, height=32 * len(values) + 100)


def whole_step(largest: int) -> int:
    """A tick step of 1, 2 or 5 times a power of ten giving at most TICKS intervals up to `largest`."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude * TICKS >= largest:
                return factor * magnitude
        magnitude *= 10


def severity_colors(ordered_values: list[str]) -> dict[str, str]:
    """A colour per value, from the least severe (first) to the most (last)."""
    if len(ordered_values) < 2:
        return {}
    last = len(ordered_values) - 1
    return {
        str(value): SEVERITY_COLORS[round(index * (len(SEVERITY_COLORS) - 1) / last)]
        for index, value in enumerate(ordered_values)
    }


def dots_chart_svg(points: dict[str, tuple[float, float]], title: str, x_name: str, y_name: str) -> str:
    """A scatter of label -> (x, y), each dot labelled in the title's legend order, as an <svg> element."""
    chart = leather.Chart(title)
    for index, (label, (x, y)) in enumerate(points.items()):
        chart.add_dots([(x, y)], name=str(label)[:LABEL_CHARACTERS], fill_color=PALETTE[index % len(PALETTE)], radius=6)
    chart.add_x_axis(name=x_name)
    chart.add_y_axis(name=y_name)
    return chart.to_svg(width=WIDTH, height=360)


PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
