import sys
from pathlib import Path

import pytest

NETS_MODULE = '''
import time

import torch
from torch import nn


def pointwise(num_classes):
    torch.manual_seed(0)
    return nn.Conv2d(3, num_classes, kernel_size=1)


class Exploding(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom in forward")


def exploding():
    return Exploding()


class Slow(nn.Module):
    def __init__(self, num_classes, seconds):
        super().__init__()
        self.inner = pointwise(num_classes)
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return self.inner(x)


def slow(num_classes, seconds):
    return Slow(num_classes, seconds)


class Raising(nn.Module):
    """Raises ``error`` (a BaseException class' name in builtins) with ``args`` in forward."""

    def __init__(self, error, args):
        super().__init__()
        self.error, self.args = error, args

    def forward(self, x):
        import builtins
        raise getattr(builtins, self.error)(*self.args)


def raising(error, args=()):
    return Raising(error, args)


def parses_arguments(num_classes):
    """A factory written for a script: argparse on the harness's command line exits."""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", required=True)
    parser.parse_args()
    return pointwise(num_classes)


class NonFinite(nn.Module):
    """A pointwise net whose scores hold ``value`` (nan or inf) on the second image of a batch."""

    def __init__(self, num_classes, value):
        super().__init__()
        self.inner = pointwise(num_classes)
        self.value = float(value)

    def forward(self, x):
        scores = self.inner(x)
        if len(scores) > 1:
            scores[1, 0, 0, 0] = self.value
        return scores


def non_finite(num_classes, value):
    return NonFinite(num_classes, value)


class SmallConvNet(nn.Module):
    """A few convolutions, output stride 2: what tests export to ONNX, TorchScript and torch.export."""

    def __init__(self, num_classes):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, num_classes, kernel_size=1))

    def forward(self, x):
        return self.layers(x)


def small_convnet(num_classes):
    """Seeded, in eval mode, with running statistics that make a forward in train mode disagree, and no
    bias in the last layer: several classes win on the synthetic images."""
    torch.manual_seed(0)
    net = SmallConvNet(num_classes).eval()
    net.layers[1].running_mean.uniform_(-1.0, 1.0)
    net.layers[1].running_var.uniform_(0.5, 2.0)
    nn.init.zeros_(net.layers[-1].bias)
    return net


class Output:
    """What transformers returns, reduced to the point: the logits as an attribute."""

    def __init__(self, logits):
        self.logits = logits


class Wrapped(nn.Module):
    """The pointwise net's logits returned the way ``kind`` says (out, logits, tuple, list, attribute), or not
    at all (string, masks)."""

    def __init__(self, num_classes, kind):
        super().__init__()
        self.inner = pointwise(num_classes)
        self.kind = kind

    def forward(self, x):
        logits = self.inner(x)
        return {"out": {"out": logits, "aux": -logits}, "logits": {"logits": logits},
                "tuple": (logits, -logits), "list": [logits], "attribute": Output(logits),
                "string": "logits", "masks": {"masks": logits}}[self.kind]


def wrapped(num_classes, kind):
    return Wrapped(num_classes, kind)
'''


@pytest.fixture
def nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding an importable module `tiny_nets` of tiny models, for `type: python`.

    It is on sys.path and PYTHONPATH, so subprocesses import it too.
    """
    folder = tmp_path / "nets"
    folder.mkdir()
    (folder / "tiny_nets.py").write_text(NETS_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))
    sys.modules.pop("tiny_nets", None)
    yield folder
    sys.modules.pop("tiny_nets", None)


# ---------------------------------------------------------------- hand-made run folders (reports, checks)

class FakeRuns:
    """Writes run folders as the runner lays them out, from per-image confusion matrices."""

    @staticmethod
    def confusions(seed: int, images: int, classes: int = 4, accuracy: float = 0.9,
                   pixels: int = 256) -> list:
        """Per-image KxK confusion matrices (rows label) of a model right on ``accuracy`` of the pixels."""
        import numpy as np

        rng = np.random.default_rng(seed)
        matrices = []
        for _ in range(images):
            label = rng.integers(0, classes, pixels)
            pred = np.where(rng.random(pixels) < accuracy, label, rng.integers(0, classes, pixels))
            matrices.append(np.bincount(label * classes + pred, minlength=classes * classes)
                            .reshape(classes, classes))
        return matrices

    @staticmethod
    def suite_metrics(options: dict | None) -> dict:
        """As the runner records them: every group, ``{}`` for those in ``options`` and null for the others."""
        from segbench.registry import METRICS, load_plugins

        load_plugins()
        recorded = options or {"accuracy": {}}
        return {name: {} if name in recorded else None for name in [*METRICS, *recorded]}

    @staticmethod
    def write(root: Path, cells: dict, *, bf: dict | None = None, extra: dict | None = None,
              image_values: dict | None = None, options: dict | None = None, suite_metrics: dict | None = None,
              finished: str = "2025-01-01T00:00:00+00:00", suite_name: str = "fake",
              class_names: list | None = None, confusion: bool | list = False,
              calibration: dict | None = None) -> Path:
        """cells: {(model, dataset): [KxK confusion per image]}; bf: {(model, dataset): (images, K) array
        with NaN where not evaluated}; extra: {(model, dataset): {summary column: value}}; image_values:
        {(model, dataset): {per-image column: one value (or per-class list) per image}}; options: each
        cell's metric options; suite_metrics: the manifest's ``suite_resolved.metrics`` (default:
        :meth:`suite_metrics` of ``options``); confusion: True (every cell) or the (model, dataset) keys whose
        summed confusion matrix is written to confusion.parquet (non-zero cells); calibration: {(model, dataset):
        rows with bin, lower, upper, pixels, mean_confidence, accuracy} for calibration.parquet."""
        import json

        import numpy as np
        import pandas as pd

        from segbench.metrics.confusion import accuracy_from_counts

        summaries, per_class, per_image, manifest_cells, extras = [], [], [], {}, {}
        for (model, dataset), matrices in cells.items():
            k = len(matrices[0])
            names = class_names or [f"class_{i}" for i in range(k)]
            counts = [{"area_intersect": np.diag(c), "area_pred_label": c.sum(0), "area_label": c.sum(1),
                       "area_union": c.sum(0) + c.sum(1) - np.diag(c)} for c in matrices]
            totals = {key: sum(c[key] for c in counts) for key in counts[0]}
            summary, classes = accuracy_from_counts(**totals)
            summary = {"model": model, "dataset": dataset, **summary, "num_images": len(matrices)}
            rows = pd.DataFrame({"model": model, "dataset": dataset, "class_id": range(k), "class_name": names,
                                 **{key: classes[key] for key in ("IoU", "Acc", "Dice")}})
            images = pd.DataFrame({"model": model, "dataset": dataset,
                                   "image_id": [f"img_{i:04d}" for i in range(len(matrices))],
                                   **{key: [c[key].tolist() for c in counts] for key in counts[0]}})
            if bf and (model, dataset) in bf:
                values = np.asarray(bf[(model, dataset)], dtype=float)
                class_bf = np.nanmean(values, axis=0)
                summary["mBF"] = float(np.nanmean(class_bf))
                rows["BF"] = class_bf
                images["BF"] = [row.tolist() for row in values]
            summary |= (extra or {}).get((model, dataset), {})
            for column, values in (image_values or {}).get((model, dataset), {}).items():
                images[column] = [np.asarray(v).tolist() for v in values]
            summaries.append(summary)
            per_class.append(rows)
            per_image.append(images)
            cell_id = f"{model}__{dataset}"
            record = {"cell_id": cell_id, "model": model, "dataset": dataset,
                      "settings": {"dataset": {"name": dataset, "height": 16, "width": 16}},
                      "dataset_fingerprint": f"fingerprint-{dataset}",
                      "metric_options": options or {"accuracy": {"num_classes": k, "ignore_index": 255}},
                      "finished": finished, "summary": summary}
            (root / "cells" / cell_id).mkdir(parents=True)
            (root / "cells" / cell_id / "cell.json").write_text(json.dumps(record))
            tables = {}
            if confusion is True or (model, dataset) in (confusion or []):
                total = sum(matrices)
                label, predicted = np.nonzero(total)
                tables["confusion"] = pd.DataFrame({"model": model, "dataset": dataset, "label_class_id": label,
                                                    "predicted_class_id": predicted,
                                                    "pixels": total[label, predicted].astype(np.int64)})
            if calibration and (model, dataset) in calibration:
                bins = pd.DataFrame(calibration[(model, dataset)])
                tables["calibration"] = pd.concat([pd.DataFrame({"model": [model] * len(bins),
                                                                 "dataset": [dataset] * len(bins)}), bins], axis=1)
            for name, frame in tables.items():
                frame.to_parquet(root / "cells" / cell_id / f"{name}.parquet", index=False)
                extras.setdefault(name, []).append(frame)
            manifest_cells[cell_id] = {"model": model, "dataset": dataset, "status": "complete",
                                       "finished": finished}
        pd.DataFrame(summaries).to_parquet(root / "summary.parquet")
        pd.concat(per_class, ignore_index=True).to_parquet(root / "per_class.parquet")
        pd.concat(per_image, ignore_index=True).to_parquet(root / "per_image.parquet")
        for name, frames in extras.items():
            pd.concat(frames, ignore_index=True).to_parquet(root / f"{name}.parquet", index=False)
        manifest = {"suite_name": suite_name, "run_id": root.name, "created": finished, "updated": finished,
                    "suite_resolved": {"metrics": suite_metrics or FakeRuns.suite_metrics(options)},
                    "cells": manifest_cells}
        (root / "manifest.json").write_text(json.dumps(manifest))
        return root


@pytest.fixture
def fake_runs() -> FakeRuns:
    """Builds hand-made run folders: ``fake_runs.write(root, {(model, dataset): confusions})``."""
    return FakeRuns()
