"""A rich progress bar on stderr for training phases (silent when disabled)."""
from __future__ import annotations


class TrainProgress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._last: dict = {}

    def __enter__(self) -> "TrainProgress":
        if self.enabled:
            from rich.console import Console
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
