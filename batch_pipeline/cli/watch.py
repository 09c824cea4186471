"""`batch-pipeline status RUN_ID --watch`: a live terminal view of a running batch (rich) —
documents done of total per status, docs/s, ETA, the partitions being analysed — until the run
ends; its exit code says how it ended."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from batch_pipeline.outcome import DocumentStatus

FINISHED = {"SUCCESS": 0, "FAILURE": 1, "CANCELED": 3}  # final Dagster status -> exit code


@dataclass(frozen=True)
class Snapshot:
    dagster_status: str
    counts: dict[str, int]  # documents per status
    running_steps: list[str]  # e.g. analyse_partition[p00003]
    at: float  # time.monotonic()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return self.total - self.counts.get(DocumentStatus.pending, 0)


def rate_and_eta(first: Snapshot, latest: Snapshot) -> tuple[float | None, float | None]:
    """Documents per second since watching began, and the seconds left at that rate."""
    seconds = latest.at - first.at
    finished = latest.done - first.done
    if seconds <= 0 or finished <= 0:
        return None, None
    rate = finished / seconds
    return rate, (latest.total - latest.done) / rate


def view(run_id: str, first: Snapshot, latest: Snapshot) -> Group:
    rate, eta = rate_and_eta(first, latest)
    summary = Table.grid(padding=(0, 2))
    summary.add_row("run", Text(run_id))  # Text: names like analyse_partition[p00003] are not markup
    summary.add_row("dagster", Text(latest.dagster_status))
    summary.add_row("documents", f"{latest.done} of {latest.total} done")
    summary.add_row("docs/s", f"{rate:.1f}" if rate else "—")
    summary.add_row("ETA", f"{eta:.0f} s" if eta is not None else "—")
    summary.add_row("running", Text(", ".join(latest.running_steps) or "—"))
    statuses = Table("status", "documents", box=None)
    for name, count in sorted(latest.counts.items()):
        statuses.add_row(Text(name), str(count))
    return Group(summary, ProgressBar(total=max(latest.total, 1), completed=latest.done, width=60), statuses)


def watch(
    run_id: str,
    read: Callable[[], Snapshot],
    console: Console | None = None,
    interval_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Redraw until the run ends; the exit code of its final status (0 success, 1 failure, 3 canceled)."""
    console = console or Console()
    first = latest = read()
    with Live(view(run_id, first, latest), console=console, auto_refresh=False) as live:
        while latest.dagster_status not in FINISHED:
            sleep(interval_seconds)
            latest = read()
            live.update(view(run_id, first, latest), refresh=True)
    return FINISHED[latest.dagster_status]
