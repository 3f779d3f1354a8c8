"""Models from Hugging Face transformers, run from a local folder exactly as transformers documents inference.

The folder is what ``save_pretrained`` writes: ``config.json``, the weights
and, unless ``processor`` names another folder, the image processor's
``preprocessor_config.json``. Each image goes through the folder's processor
(resize, rescale, normalise), the model, and the processor's
``post_process_semantic_segmentation`` with the image's own size as target.
Logit models (SegFormer, UperNet, BEiT, DPT) and mask models (Mask2Former,
MaskFormer, OneFormer) both work.

Nothing is fetched from the hub: every load is ``local_files_only`` and runs
with huggingface_hub's offline mode on. transformers is imported here only,
and only when a suite uses a model of type ``hf``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from segbench.config import ModelBase, SuitePath
from segbench.errors import UserError
from segbench.fingerprint import file_sha256
from segbench.models.base import (ModelAdapter, class_map_table, map_classes, require_finite, top_label,
                                  with_confidence_one_at_a_time)
from segbench.registry import register_model
from segbench.types import DatasetInfo

INSTALL_HINT = "type 'hf' needs transformers: pip install 'segbench[hf]' (or `make install` in the checkout)"
CONFIG_FILE = "config.json"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # an image processor's; a processor's
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
# The outputs post_process_semantic_segmentation reads: a logit model's, or a mask model's.
LOGIT_FIELDS = ("logits",)
MASK_FIELDS = ("class_queries_logits", "masks_queries_logits")


class HFModelConfig(ModelBase):
    type: Literal["hf"]
    path: SuitePath
    """A local folder written by ``save_pretrained``: config.json, the weights, and the image processor."""
    processor: SuitePath | None = None
    """The image processor's folder, when it is not in ``path``."""
    class_map: list[int] | None = None
    """For each class the model predicts, the dataset class it counts as."""

    def processor_dir(self) -> Path:
        return self.path if self.processor is None else self.processor

    def input_paths(self, dataset: str) -> list[Path]:
        return [self.path] + ([] if self.processor is None else [self.processor])


def require_transformers() -> Any:
    """The transformers module; a UserError saying which extra installs it when it is missing."""
    try:
        import transformers
    except ImportError as error:
        raise UserError(f"{INSTALL_HINT} ({type(error).__name__}: {error})") from None
    return transformers


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """What every load runs under: huggingface_hub's offline mode (HF_HUB_OFFLINE), and no progress bars.

    ``local_files_only`` covers the files of the folder; offline mode also covers what a config can name
    beside them (a backbone by hub name, which transformers would otherwise look up), so no request
    ever reaches the hub. transformers' "Loading weights" bar would cut through the run's progress display.
    """
    from huggingface_hub import constants
    from transformers.utils import logging

    offline, bars = constants.HF_HUB_OFFLINE, logging.is_progress_bar_enabled()
    constants.HF_HUB_OFFLINE = True
    logging.disable_progress_bar()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = offline
        if bars:
            logging.enable_progress_bar()


def _require_file(folder: Path, names: tuple[str, ...], field: str) -> None:
    """One of ``names`` in ``folder``; else a UserError naming the first (and the others)."""
    if not any((folder / name).is_file() for name in names):
        others = f" (nor {' or '.join(names[1:])})" if len(names) > 1 else ""
        raise UserError(f"{names[0]} not found in {folder}{others}: the folder save_pretrained writes is "
                        "needed, nothing is fetched from the hub", source=str(folder / names[0]), field=field)


def check_files(cfg: HFModelConfig) -> None:
    """The folders and the files transformers reads from them; a missing one is named.

    An image processor saves ``preprocessor_config.json``; a processor with a tokenizer (OneFormer's)
    saves ``processor_config.json`` in transformers 5.
    """
    if not cfg.path.is_dir():
        raise UserError("model folder not found", source=str(cfg.path), field="path")
    _require_file(cfg.path, (CONFIG_FILE,), "path")
    if not any((cfg.path / name).is_file() for name in WEIGHTS_FILES):
        raise UserError(f"no weights in {cfg.path}: expected {' or '.join(WEIGHTS_FILES[::2])}",
                        source=str(cfg.path), field="path")
    if cfg.processor is not None and not cfg.processor.is_dir():
        raise UserError("processor folder not found", source=str(cfg.processor), field="processor")
    _require_file(cfg.processor_dir(), PROCESSOR_FILES, "path" if cfg.processor is None else "processor")


def load_config(cfg: HFModelConfig) -> Any:
    """The model's transformers config, read from the folder; an unreadable one is a UserError."""
    transformers = require_transformers()
    try:
        with loading():
            return transformers.AutoConfig.from_pretrained(cfg.path, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"transformers cannot read the model's config: {_first_line(error)}",
                        source=str(cfg.path / CONFIG_FILE), field="path") from None


def model_class(config: Any) -> type:
    """The transformers class for semantic segmentation: the config's ``architectures`` when one is such a
    class, else the one its ``model_type`` maps to (logit models first, then mask models)."""
    import transformers
    from transformers.models.auto import modeling_auto

    mappings = (modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES,
                modeling_auto.MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES,
                modeling_auto.MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES)
    known = {name for mapping in mappings for name in mapping.values()}
    for name in config.architectures or []:
        if name in known:
            return getattr(transformers, name)
    for mapping in mappings:
        if config.model_type in mapping:
            return getattr(transformers, mapping[config.model_type])
    raise UserError(f"model_type {config.model_type!r} (architectures {config.architectures}) is not a "
                    f"segmentation model of transformers {transformers.__version__}; supported model types: "
                    f"{', '.join(sorted({t for mapping in mappings for t in mapping}))}", field="path")


def config_classes(cfg: HFModelConfig) -> int:
    """The number of classes the model predicts, without the model: num_labels as transformers reads it from
    config.json (its rules for num_labels, id2label and neither are transformers' to keep)."""
    return load_config(cfg).num_labels


def check_model(cfg: HFModelConfig) -> None:
    """Checks before any work: transformers importable, the files there, the config a segmentation model's."""
    require_transformers()
    check_files(cfg)
    model_class(load_config(cfg))


def weights_sha256(folder: Path) -> dict[str, str]:
    """sha256 of each weights file of the folder (a sharded checkpoint has several), by file name."""
    files = sorted([*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")])
    return {path.name: file_sha256(path) for path in files}


class KeywordForward(nn.Module):
    """``module(*tensors)`` as ``model(**dict(zip(names, tensors)))``: the profiler calls with positional
    arguments, and mask models take the processor's ``pixel_mask`` (OneFormer its ``task_inputs``) by name."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> Any:
        return self.model(**dict(zip(self.names, tensors)))


class HFAdapter(ModelAdapter):
    """The folder's image processor, model and post-processing, as transformers' documented inference."""

    def __init__(self, cfg: HFModelConfig, info: DatasetInfo, device: torch.device) -> None:
        transformers = require_transformers()
        check_files(cfg)
        self.name = cfg.name
        self.device = device
        config = load_config(cfg)
        cls = model_class(config)
        self.processor = self._load_processor(transformers, cfg, config)
        self.model = self._load_model(cls, cfg).to(device).eval()
        model_classes = config.num_labels
        self.class_map = class_map_table(cfg.class_map, model_classes, info)
        self.num_classes = info.num_classes if self.class_map is not None else model_classes
        self._provenance = {
            "type": "hf", "path": str(cfg.path), "processor": None if cfg.processor is None else str(cfg.processor),
            "model_type": config.model_type, "architectures": list(config.architectures or []),
            "model_class": cls.__name__, "processor_class": type(self.processor).__name__,
            "id2label": {str(key): value for key, value in config.id2label.items()},
            "model_classes": model_classes, "class_map": cfg.class_map, "trained": True,
            "weights_sha256": weights_sha256(cfg.path), "transformers_version": transformers.__version__,
        }

    @staticmethod
    def _load_processor(transformers: Any, cfg: HFModelConfig, config: Any) -> Any:
        """AutoProcessor: the image processor (the torchvision backend where torchvision is installed,
        else the PIL one, as transformers chooses), or OneFormer's processor with its tokenizer. The
        model's config tells it the model type when a separate processor folder does not."""
        folder = cfg.processor_dir()
        try:
            with loading():
                processor = transformers.AutoProcessor.from_pretrained(folder, local_files_only=True,
                                                                       config=config)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"transformers cannot load the image processor: {_first_line(error)}",
                            source=str(folder),
                            field="path" if cfg.processor is None else "processor") from None
        if not hasattr(processor, "post_process_semantic_segmentation"):
            raise UserError(f"{type(processor).__name__} has no post_process_semantic_segmentation",
                            source=str(folder),
                            field="path" if cfg.processor is None else "processor")
        return processor

    @staticmethod
    def _load_model(cls: type, cfg: HFModelConfig) -> nn.Module:
        """The model in float32 (segbench's precisions are autocast over fp32 weights); a checkpoint that
        leaves weights of the model uninitialised is an error, not a silently random head."""
        try:
            with loading():
                model, info = cls.from_pretrained(cfg.path, local_files_only=True, dtype=torch.float32,
                                                  output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as error:
            raise UserError(f"transformers cannot load the model: {_first_line(error)}",
                            source=str(cfg.path), field="path") from None
        missing = sorted(info.get("missing_keys") or [])  # weights of another shape: transformers refuses
        if missing:
            raise UserError(f"the weights lack {len(missing)} weights of {cls.__name__} "
                            f"(e.g. {', '.join(missing[:3])}): are they for this model class?",
                            source=str(cfg.path), field="path")
        return model

    def _inputs(self, images: list[np.ndarray]) -> Any:
        """The processor's batch (a BatchFeature) on the device; OneFormer is told the task is semantic."""
        task = "task_inputs" in getattr(self.processor, "model_input_names", [])
        extra = {"task_inputs": ["semantic"] * len(images)} if task else {}
        return self.processor(images=images, return_tensors="pt", **extra).to(self.device)

    def _segment(self, images: list[np.ndarray], ids: list[str]) -> tuple[Any, list[torch.Tensor]]:
        """The model's outputs on a batch of equal-sized images and transformers' own label maps of the
        model's classes at the images' sizes (post_process_semantic_segmentation), on the device."""
        outputs = self.model(**self._inputs(images))
        for field in MASK_FIELDS if getattr(outputs, MASK_FIELDS[0], None) is not None else LOGIT_FIELDS:
            require_finite(getattr(outputs, field), ids, self.name)
        sizes = [tuple(image.shape[:2]) for image in images]
        maps = self.processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
        return outputs, [label_map.to(self.device, torch.int64) for label_map in maps]

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], ids: list[str]) -> list[torch.Tensor]:
        if len({image.shape for image in images}) > 1:  # images of different sizes: one at a time
            return [self.predict([image], [id_])[0] for image, id_ in zip(images, ids)]
        return map_classes(self.class_map, self._segment(images, ids)[1])

    @torch.inference_mode()
    def predict_with_confidence(self, images: list[np.ndarray],
                                ids: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """The label maps as ``predict`` gives them and, for logit models, the predicted class's probability:
        the softmax of the logits upsampled to the image's size (bilinear, align_corners=False, as
        post_process_semantic_segmentation upsamples them before its argmax). With a class_map, the
        probability of the predicted dataset class sums its model classes'. Mask models (Mask2Former,
        MaskFormer, OneFormer) hand over none: their semantic map is a sum of mask scores, not a probability
        (None: the calibration group records itself as not applicable)."""
        import torch.nn.functional as F

        if len({image.shape for image in images}) > 1:
            return with_confidence_one_at_a_time(self, images, ids)
        outputs, predictions = self._segment(images, ids)
        if getattr(outputs, MASK_FIELDS[0], None) is not None:  # a mask model
            return map_classes(self.class_map, predictions), None
        probabilities = [F.interpolate(outputs.logits[i:i + 1].float(), size=tuple(image.shape[:2]),
                                       mode="bilinear", align_corners=False)[0].softmax(dim=0).to(self.device)
                         for i, image in enumerate(images)]
        return top_label(probabilities, predictions, self.class_map, self.num_classes)

    def forward_inputs(self, images: list[np.ndarray]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """The model and the processor's tensors (``pixel_values`` first): the model scope is the
        forward pass on processed inputs; processing and post-processing belong to end_to_end."""
        inputs = self._inputs(images)
        return KeywordForward(self.model, tuple(inputs.keys())), tuple(inputs.values())

    def provenance(self) -> dict[str, Any]:
        return self._provenance


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


@register_model("hf", config=HFModelConfig, check=check_model, eval_ref="path", classes=config_classes,
                describe="Hugging Face transformers models from a local save_pretrained folder")
def build_hf(cfg: HFModelConfig, info: DatasetInfo, device: torch.device) -> HFAdapter:
    return HFAdapter(cfg, info, device)
