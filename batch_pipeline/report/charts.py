"""The report's charts, drawn with matplotlib as inline SVG (no file, no server, no network)."""

import io

import matplotlib

matplotlib.use("Agg")  # no screen: render to memory only

import matplotlib.pyplot as plt  # noqa: E402


def bar_chart_svg(values: dict[str, int | float], title: str) -> str:
    """A horizontal bar chart of label -> number, as an <svg> element."""
    labels = list(values)[::-1]
    figure, axes = plt.subplots(figsize=(6.4, 0.45 * len(labels) + 1.0))
    try:
        bars = axes.barh(labels, [values[label] for label in labels], color="#4c78a8")
        axes.bar_label(bars, padding=3)
        axes.set_title(title, loc="left", fontsize=11)
        axes.spines[["top", "right"]].set_visible(False)
        axes.margins(x=0.15)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # the element alone, to sit inside the page
