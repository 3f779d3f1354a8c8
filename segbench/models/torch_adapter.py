"""Adapters for torch modules: our built-in zoo (``builtin``) and the user's own (``python``)."""

from __future__ import annotations

import importlib
import re
import sys
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from torch import nn

from segbench.config import (IMAGENET_MEAN, IMAGENET_STD, InferenceConfig, ModelBase, SuitePath,
                             reject_url, resolve_path)
from segbench.types import DatasetInfo
from segbench.errors import UserError
from segbench.models.base import ModelAdapter, require_finite, top_probability, with_confidence_one_at_a_time
from segbench.fingerprint import file_sha256
from segbench.models.checkpoint import load_state_dict
from segbench.models.inference import segment
from segbench.models.nets import ARCHS, demo_metadata, load_demo_weights
from segbench.registry import register_model


class TorchAdapter(ModelAdapter):
    """Normalises RGB uint8 images on the model's device, runs the net, returns the argmax."""

    def __init__(self, name: str, net: nn.Module, num_classes: int, mean: list[float], std: list[float],
                 inference: InferenceConfig, device: torch.device, provenance: dict[str, Any]) -> None:
        self.name = name
        self.net = net.eval().to(device)
        self.num_classes = num_classes
        self.device = device
        self.inference = inference
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._provenance = {**provenance, "mean": list(mean), "std": list(std),
                            "inference": inference.model_dump(mode="json")}

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """The normalised NCHW batch, in channels-last memory format (the NHWC images permuted):
        oneDNN's CPU convolutions run about 1.5x faster on it than on a contiguous NCHW batch."""
        batch = torch.from_numpy(np.stack(images)).to(self.device, non_blocking=True)
        return (batch.permute(0, 3, 1, 2).float() - self.mean) / self.std

    def _scores(self, images: list[np.ndarray], ids: list[str]) -> torch.Tensor:
        """N x K x H x W at the images' size: logits, or the mean softmax of the TTA views."""
        scores = segment(self.net, self.preprocess(images), self.inference)
        if scores.shape[1] != self.num_classes:
            raise UserError(f"the model returned {scores.shape[1]} channels, "
                            f"but num_classes is {self.num_classes}")
        require_finite(scores, ids, self.name)
        return scores

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], ids: list[str]) -> list[torch.Tensor]:
        if len({image.shape for image in images}) > 1:  # images of different sizes: one at a time
            return [self.predict([image], [id_])[0] for image, id_ in zip(images, ids)]
        return list(self._scores(images, ids).argmax(dim=1))

    @torch.inference_mode()
    def predict_with_confidence(self, images: list[np.ndarray],
                                ids: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The same argmax as ``predict``, and the predicted class's probability: the float32 softmax of the
        logits at the image's size, or with TTA the averaged probabilities the prediction came from."""
        if len({image.shape for image in images}) > 1:
            return with_confidence_one_at_a_time(self, images, ids)
        scores = self._scores(images, ids)
        predictions = scores.argmax(dim=1)
        tta = self.inference.scales != [1.0] or self.inference.flip
        confidence = scores.float().gather(1, predictions[:, None])[:, 0] if tta else top_probability(scores)
        return list(predictions), list(confidence)

    def forward_inputs(self, images: list[np.ndarray]) -> tuple[nn.Module, tuple[torch.Tensor]]:
        return self.net, (self.preprocess(images),)

    def provenance(self) -> dict[str, Any]:
        return self._provenance


def _load_into(net: nn.Module, path: Path) -> dict[str, Any]:
    state = load_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:  # torch lists each mismatch on a line of its own
        details = "; ".join(line.strip() for line in str(error).splitlines()[1:] if line.strip())
        raise UserError(f"checkpoint does not fit the model: {details}", source=str(path)) from None
    return {"checkpoint": str(path), "checkpoint_sha256": file_sha256(path), "trained": True}


class BuiltinModelConfig(ModelBase):
    type: Literal["builtin"]
    arch: str
    weights: str = "demo"
    """'demo' for the shipped weights, 'random' for none, or a .safetensors/.pth path."""
    num_classes: int | None = Field(None, ge=1)
    inference: InferenceConfig = InferenceConfig()

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        from segbench.models.nets import ARCHS
        if value not in ARCHS:
            raise ValueError(f"unknown arch {value!r}; known: {', '.join(sorted(ARCHS))}")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_path(cls, value: str, info: ValidationInfo) -> str:
        if value in ("demo", "random"):
            return value
        return str(resolve_path(reject_url(value), info))

    def input_paths(self, dataset: str) -> list[Path]:
        return [] if self.weights in ("demo", "random") else [Path(self.weights)]


def builtin_classes(cfg: BuiltinModelConfig) -> int | None:
    """num_classes (None: the dataset's), or the demo weights' classes, read from their file's metadata
    without the weights (a missing file is left to the build, which names it)."""
    if cfg.weights != "demo":
        return cfg.num_classes
    try:
        return demo_metadata(cfg.arch)["num_classes"]
    except FileNotFoundError:
        return None


@register_model("builtin", config=BuiltinModelConfig, eval_ref="arch", eval_checkpoint="weights",
                describe="segbench's own nets: " + ", ".join(sorted(ARCHS)), classes=builtin_classes)
def build_builtin(cfg: BuiltinModelConfig, info: DatasetInfo, device: torch.device) -> TorchAdapter:
    if cfg.weights == "demo":
        net, meta = load_demo_weights(cfg.arch)
        provenance = {"type": "builtin", "arch": cfg.arch, "weights": "demo",
                      "checkpoint_sha256": meta["sha256"], "trained": True,
                      "trained_on": meta.get("dataset", "synthetic")}
        return TorchAdapter(cfg.name, net, meta["num_classes"], meta["mean"], meta["std"], cfg.inference,
                            device, provenance)
    num_classes = cfg.num_classes or info.num_classes
    torch.manual_seed(0)
    net = ARCHS[cfg.arch](num_classes)
    provenance = {"type": "builtin", "arch": cfg.arch, "weights": cfg.weights, "trained": False}
    if cfg.weights != "random":
        provenance |= _load_into(net, Path(cfg.weights))
    return TorchAdapter(cfg.name, net, num_classes, IMAGENET_MEAN, IMAGENET_STD, cfg.inference, device,
                        provenance)


def import_factory(path: str, folder: Path | None = None) -> Any:
    """The callable named by 'package.module:attribute'; an import failure is a UserError.

    ``folder`` (the suite file's) is put on the import path first, after what is
    there already, so a module beside the suite imports under the console script
    as under ``python -m`` (which has the working folder on it).
    """
    if folder is not None and str(folder) not in sys.path:
        sys.path.append(str(folder))
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # a module that parses arguments on import exits
        raise UserError(f"cannot import module {module_name!r}: {type(error).__name__}: {error}",
                        field="factory") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UserError(f"module {module_name!r} has no callable {attribute!r}", field="factory")
    return factory


class PythonModelConfig(ModelBase):
    type: Literal["python"]
    factory: str
    """'module:function', e.g. 'nets:build': a module importable, or beside the suite file."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(ge=1)
    mean: tuple[float, float, float] = tuple(IMAGENET_MEAN)
    std: tuple[float, float, float] = tuple(IMAGENET_STD)
    checkpoint: SuitePath | None = None
    inference: InferenceConfig = InferenceConfig()

    _suite_folder: Path | None = PrivateAttr(None)
    """The suite file's folder (the validation's base_dir), where the factory's module may lie."""

    @field_validator("factory")
    @classmethod
    def _module_colon_function(cls, value: str) -> str:
        if not _FACTORY.match(value):
            raise ValueError(f"factory {value!r}: write the factory as 'module:function', e.g. 'nets:build' "
                             "(nets.py beside the suite, or an importable module; packages as 'pkg.nets:build')")
        return value

    @model_validator(mode="after")
    def _remember_folder(self, info: ValidationInfo) -> "PythonModelConfig":
        base = (info.context or {}).get("base_dir")
        self._suite_folder = None if base is None else Path(base)
        return self

    def input_paths(self, dataset: str) -> list[Path]:
        return [] if self.checkpoint is None else [self.checkpoint]


_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _factory(cfg: PythonModelConfig) -> Any:
    return import_factory(cfg.factory, cfg._suite_folder)


@register_model("python", config=PythonModelConfig, check=_factory, eval_ref="factory",
                eval_checkpoint="checkpoint", classes=attrgetter("num_classes"),
                describe="your own torch.nn.Module, from a factory function ('module:function')")
def build_python(cfg: PythonModelConfig, info: DatasetInfo, device: torch.device) -> TorchAdapter:
    net = _factory(cfg)(**cfg.kwargs)
    if not isinstance(net, nn.Module):
        raise UserError(f"{cfg.factory} returned {type(net).__name__}, not a torch.nn.Module",
                        field="factory")
    # Without a checkpoint the factory may have loaded weights itself, or not: segbench cannot tell.
    provenance = {"type": "python", "factory": cfg.factory, "kwargs": cfg.kwargs, "trained": "unknown"}
    if cfg.checkpoint is not None:
        provenance |= _load_into(net, cfg.checkpoint)
    return TorchAdapter(cfg.name, net, cfg.num_classes, list(cfg.mean), list(cfg.std), cfg.inference, device,
                        provenance)
