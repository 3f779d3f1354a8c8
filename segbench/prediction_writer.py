"""Saving predictions as palette PNGs in a background thread, so that evaluation does not wait for them.

The files go to a staging folder: ``store.write_cell`` moves it into the cell
folder, which appears only once the cell is complete. A staging folder under
the run's ``cells/`` is named like the store's other temporaries
(``.<cell id>.predictions.<random>.tmp``), so an interrupted run's leftover is
removed by ``RunStore.remove_stale_temporaries``.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from pathlib import Path

import torch

from segbench.atomic import temporary_folder
from segbench.errors import UserError
from segbench.images import write_label
from segbench.models.predictions import prediction_path

PENDING = 16  # predictions waiting to be written; a full queue makes evaluation wait
# PNG compression releases the GIL, so writers scale with threads: one 2048x1024 map takes about
# 23 ms on this CPU, slower than a fast GPU evaluates it.
THREADS = min(4, os.cpu_count() or 1)
_DONE = None


class PredictionWriter:
    """Writes ``<folder>/<image id>.png``, the names the ``predictions`` model type reads.

    ``submit`` queues the prediction; THREADS threads copy it to the CPU as
    uint8 (int32 beyond 256 classes), encode and write the PNGs, so the
    evaluating thread spends nothing on it. The prediction must not change
    after ``submit`` (the runner's never do). An error of a thread is raised
    by the next ``submit`` or by ``close``, so it fails the cell instead of
    being lost.
    """

    def __init__(self, parent: Path | None, cell_id: str, palette: list[tuple[int, int, int]]) -> None:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.folder = temporary_folder(parent, f".{cell_id}.predictions.")
        self.palette = palette if len(palette) <= 256 else None
        self._queue: queue.Queue = queue.Queue(maxsize=PENDING)
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._work, name=f"predictions-{cell_id}-{i}", daemon=True)
                         for i in range(THREADS)]
        for thread in self._threads:
            thread.start()

    def submit(self, image_id: str, prediction: torch.Tensor) -> None:
        """Queue one HxW prediction of class indices (any device); waits while the queue is full."""
        self._raise_error()
        self._queue.put((image_id, prediction.detach()))

    def close(self) -> Path:
        """Wait until every queued prediction is written; the folder, or the writer's error."""
        self._stop()
        self._raise_error()
        return self.folder

    def abort(self) -> None:
        """Stop and delete what was written (the cell failed)."""
        self._stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_DONE)
        for thread in self._threads:
            thread.join()

    def _raise_error(self) -> None:
        if isinstance(self._error, UserError):  # it names the file it could not write (a full disk)
            raise self._error
        if self._error is not None:
            raise RuntimeError(f"writing predictions to {self.folder} failed: "
                               f"{type(self._error).__name__}: {self._error}") from self._error

    def _work(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is None:  # after an error, only drain the queue so submit never blocks
                try:
                    self._write(*item)
                except BaseException as error:  # raised in the evaluating thread by submit/close
                    self._error = error

    def _write(self, image_id: str, prediction: torch.Tensor) -> None:
        path = prediction_path(self.folder, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        dtype = torch.uint8 if self.palette is not None else torch.int32
        write_label(path, prediction.to("cpu", dtype).numpy(), self.palette)


def join_folders(folders: list[Path | None]) -> Path | None:
    """One staging folder from the ranks' folders (in rank order): the others' files move into the first."""
    present = [folder for folder in folders if folder is not None]
    if not present:
        return None
    first, *others = present
    for folder in others:
        for path in folder.rglob("*.png"):
            target = first / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
        shutil.rmtree(folder, ignore_errors=True)
    return first


def discard(folders: list[Path | None]) -> None:
    """Delete staging folders whose cell failed."""
    for folder in folders:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
