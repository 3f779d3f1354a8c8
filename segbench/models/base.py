"""What every model adapter provides to the runner."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from segbench.errors import DataError, UserError
from segbench.types import DatasetInfo


class ModelAdapter:
    """Takes RGB uint8 images, returns label maps of the same height and width.

    Whatever a framework needs (channel order, normalisation, resizing,
    sliding window, test-time augmentation) stays inside the adapter.
    ``num_classes`` is the number of classes the model predicts.
    """

    num_classes: int
    device: torch.device

    def predict(self, images: list[np.ndarray], ids: list[str]) -> list[torch.Tensor]:
        """One int64 HxW label map per image (HxWx3 uint8 RGB), on ``self.device``."""
        raise NotImplementedError

    def predict_with_confidence(self, images: list[np.ndarray],
                                ids: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """The label maps and, per image, the float HxW probability of the predicted class (the top-label
        confidence), for the groups that need it (calibration). Adapters without probabilities (saved
        predictions) keep this default: None."""
        return self.predict(images, ids), None

    def forward_inputs(self, images: list[np.ndarray]) -> tuple[nn.Module, tuple[Any, ...]]:
        """The network and the arguments of its forward pass on these images, already preprocessed.

        ``module(*args)`` is what the profiler's "model" scope times. Adapters
        that run no network (saved predictions) keep this default.
        """
        raise NotImplementedError(f"{type(self).__name__} runs no network to profile")

    def provenance(self) -> dict[str, Any]:
        """What the predictions depend on: source, checkpoint path and sha256, trained or not."""
        raise NotImplementedError


def require_finite(scores: torch.Tensor, ids: list[str], model: str) -> None:
    """NaN or inf scores would argmax to class 0 unnoticed: a DataError naming the model and the images.

    Two reductions answer for the whole batch (NaN and inf carry through max and min); only a batch that
    holds one is searched image by image: a full isfinite map of 1024x2048x19 scores costs a CPU 0.2-0.5 s.
    """
    if bool(torch.isfinite(scores.amax()) & torch.isfinite(scores.amin())):
        return
    finite = torch.isfinite(scores).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = [image_id for image_id, ok in zip(ids, finite.tolist()) if not ok]
        raise DataError(f"model {model!r} returned non-finite scores (NaN or inf) for image "
                        f"{', '.join(map(repr, bad))}")


def class_map_table(class_map: list[int] | None, model_classes: int,
                    info: DatasetInfo) -> torch.Tensor | None:
    """The model class -> dataset class lookup table (None: the model's classes are the dataset's)."""
    if class_map is None:
        if model_classes != info.num_classes:
            raise UserError(f"the model predicts {model_classes} classes but dataset {info.name!r} "
                            f"has {info.num_classes}; give a class_map (model class -> dataset class)",
                            field="class_map")
        return None
    if len(class_map) != model_classes or not all(0 <= c < info.num_classes for c in class_map):
        raise UserError(f"class_map must list, for each of the model's {model_classes} classes, "
                        f"a dataset class in [0, {info.num_classes})", field="class_map")
    return torch.tensor(class_map, dtype=torch.int64)


def map_classes(class_map: torch.Tensor | None, predictions: list[torch.Tensor]) -> list[torch.Tensor]:
    """Label maps of model classes as dataset classes, through a ``class_map_table`` (None: unchanged)."""
    if class_map is None:
        return predictions
    return [class_map.to(p.device)[p] for p in predictions]


def top_probability(scores: torch.Tensor) -> torch.Tensor:
    """The largest softmax probability over dim 1 of NxKxHxW logits, 1 / Σ_k exp(x_k − max): what the
    softmax gives the argmax class, without materialising it (on a CPU at 19x1024x2048, channels-last: 180
    against 400 ms for a softmax and a gather on one thread, 95 against 292 ms on two)."""
    scores = scores.float()
    return (scores - scores.amax(dim=1, keepdim=True)).exp_().sum(dim=1).reciprocal_()


def top_label(probabilities: list[torch.Tensor], predictions: list[torch.Tensor], class_map: torch.Tensor | None,
              num_classes: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The label maps (KxHxW model-class probabilities' argmax, ``predictions``) as dataset classes, and each
    pixel's probability of its predicted class; with a class_map, a dataset class's probability sums those
    of its model classes."""
    if class_map is not None:
        probabilities = [torch.zeros((num_classes, *p.shape[1:]), device=p.device, dtype=p.dtype)
                         .index_add_(0, class_map.to(p.device), p) for p in probabilities]
        predictions = map_classes(class_map, predictions)
    return predictions, [p.gather(0, pred[None])[0] for p, pred in zip(probabilities, predictions)]


def with_confidence_one_at_a_time(adapter: ModelAdapter, images: list[np.ndarray],
                                  ids: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """``predict_with_confidence`` image by image, for images of different sizes (they do not batch)."""
    pairs = [adapter.predict_with_confidence([image], [id_]) for image, id_ in zip(images, ids)]
    predictions = [prediction[0] for prediction, _ in pairs]
    if any(confidence is None for _, confidence in pairs):
        return predictions, None
    return predictions, [confidence[0] for _, confidence in pairs]
