"""Rich progress bars on stderr: training phases (``TrainProgress``) and photo counts (``photo_progress``).

Both draw only when stderr is a terminal, so pipes, CI logs and --json output stay clean.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Optional

Tick = Optional[Callable[[int], None]]


def photo_progress(total: int, label: str = "classifying", min_total: int = 64,
                   completed: int = 0) -> ContextManager[Tick]:
    """A context manager yielding ``tick(n)`` (n more photos done) that draws a transient bar on stderr
    with photos/s and the time left, or ``None`` when stderr is not a terminal or the work is small
    (< ``min_total`` photos). ``completed``: photos done before (a resumed run), not counted in the rate."""
    from rich.console import Console

    console = Console(stderr=True)
    if total - completed < min_total or not console.is_terminal:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    @contextlib.contextmanager
    def bar():
        rate = TextColumn("{task.fields[rate]}")
        with Progress(label, BarColumn(), MofNCompleteColumn(), rate, TimeRemainingColumn(),
                      console=console, transient=True) as prog:
            task = prog.add_task("photos", total=total, completed=completed, rate="")

            def tick(n: int) -> None:
                prog.advance(task, n)
                speed = next(t for t in prog.tasks if t.id == task).speed
                prog.update(task, rate=f"{speed:.1f} photos/s" if speed else "")

            yield tick

    return bar()


class TrainProgress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._last: dict = {}

    def __enter__(self) -> "TrainProgress":
        from rich.console import Console

        if self.enabled and Console(stderr=True).is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=Console(stderr=True), transient=False)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def advance(self, phase: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        if phase not in self._tasks:
            self._tasks[phase] = self._bar.add_task(f"{phase:>6}", total=total, info="")
        info = ""
        if "val_H_cal" in self._last:
            info = f"val H {self._last['val_H_cal']:.3f} (γ={self._last['val_gamma']:.2g})"
        self._bar.update(self._tasks[phase], completed=done, total=total, info=info)

    def on_epoch(self, phase: str, row: dict) -> None:
        self._last = row
