"""Models from mmsegmentation, run through the config's own test pipeline, preprocessor and test_cfg.

mmseg, mmcv and mmengine are imported here only, and only when a suite uses a
model of type ``mmseg``; the rest of segbench works without them.
"""

from __future__ import annotations

import copy
import difflib
import functools
import pickle
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import yaml
from pydantic import Field

from segbench.config import MMSEG_WEIGHTS_HINT, ConfigRef, ModelBase, is_file_reference, local_path
from segbench.types import DatasetInfo
from segbench.errors import UserError
from segbench.models.base import (ModelAdapter, class_map_table, map_classes, require_finite, top_label,
                                  with_confidence_one_at_a_time)
from segbench.fingerprint import file_sha256
from segbench.models.checkpoint import load_error
from segbench.mmseg_support import mim_root, require_mmseg  # also imported from here (cli, tests)
from segbench.registry import register_model

@functools.cache
def model_index() -> dict[str, dict[str, Any]]:
    """mmseg's packaged model index: name -> config path and published results."""
    root = mim_root()
    index = {}
    for metafile in yaml.safe_load((root / "model-index.yml").read_text())["Import"]:
        for entry in yaml.safe_load((root / metafile).read_text()).get("Models", []):
            results = entry.get("Results") or []
            results = results if isinstance(results, list) else [results]
            first = results[0] if results else {}
            metrics = first.get("Metrics", {})
            index[entry["Name"]] = {
                "config": root / entry["Config"],
                "dataset": first.get("Dataset"),
                "mIoU": metrics.get("mIoU"),
                "mIoU(ms+flip)": metrics.get("mIoU(ms+flip)"),
                "weights": entry.get("Weights"),
            }
    return index


def resolve_config(config: str) -> tuple[Path, dict[str, Any] | None]:
    """A config file path, and the model index entry when ``config`` names one."""
    if is_file_reference(config):
        path = Path(config)
        if not path.is_file():
            raise UserError("mmseg config file not found", source=str(path), field="config")
        return path, None
    index = model_index()
    if config not in index:
        close = difflib.get_close_matches(config, list(index), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `segbench list models --mmseg` lists them"
        raise UserError(f"{config!r} is not in mmseg's model index{hint}", field="config")
    return index[config]["config"], index[config]


def check_model(cfg: Any) -> None:
    """Checks before any work: mmseg importable, the config found."""
    require_mmseg()
    resolve_config(cfg.config)


def load_config(cfg: Any) -> tuple[Any, Path, dict[str, Any] | None]:
    """The model's mmengine Config with the suite's ``cfg_options`` merged, its file, and its model index
    entry (None for a config file)."""
    from mmengine.config import Config

    config_path, published = resolve_config(cfg.config)
    config = Config.fromfile(str(config_path))
    if cfg.cfg_options:
        config.merge_from_dict(_sizes_as_tuples(dict(cfg.cfg_options)), allow_list_keys=True)
    return config, config_path, published


def config_classes(cfg: Any) -> int | None:
    """The classes the config's decode head predicts (a cascade's last head), read without building the net."""
    head = load_config(cfg)[0].model.get("decode_head")
    if isinstance(head, list):
        head = head[-1]
    return None if head is None else head.get("num_classes")


# The statistics methods an mmengine HistoryBuffer pickles with itself (its __getstate__ adds them).
HISTORY_BUFFER_METHODS = ("min", "max", "current", "mean")


def _history_buffer_method(owner: Any, name: str) -> Any:
    """What ``builtins.getattr`` means in a safe load: one of HistoryBuffer's statistics methods, nothing else.

    torch.save pickles with protocol 2, which writes a method as ``getattr(class, name)``: every
    checkpoint that mmengine's Runner saves has them, in the message hub's HistoryBuffers. The real
    getattr must not be allowed: it reaches anything from an allowed object (``getattr.__self__`` is
    the builtins module, and its ``exec``), and torch's own allowed ``_rebuild_from_type_v2`` calls
    whatever it is given, so a crafted checkpoint would run code in a weights_only load.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError("Unsupported global: GLOBAL getattr (allowed for HistoryBuffer's "
                                 f"{', '.join(HISTORY_BUFFER_METHODS)} only)")  # worded as torch's refusals


def _safe_globals() -> list[Any]:
    """The few non-tensor types mmseg checkpoints carry in their meta and message hub (training history, numpy)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    from numpy._core import multiarray

    allowed: list[Any] = [HistoryBuffer, np.dtype, np.ndarray, (_history_buffer_method, "builtins.getattr")]
    for name in ("_reconstruct", "scalar"):  # pickles name them under numpy 1's and numpy 2's module
        allowed += [(getattr(multiarray, name), f"numpy.core.multiarray.{name}"),
                    (getattr(multiarray, name), f"numpy._core.multiarray.{name}")]
    allowed += [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return allowed


def load_checkpoint(path: Path, allow_unsafe: bool) -> dict[str, Any]:
    """The checkpoint's dict, loaded with weights_only=True unless the suite allows otherwise."""
    if not path.is_file():
        raise UserError("checkpoint file not found", source=str(path), field="checkpoint")
    try:
        if allow_unsafe:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (a corrupt file fails in many ways)
        raise load_error(error, path, "if you trust this file, set `allow_unsafe_checkpoint: true` for this "
                                      "model", field="checkpoint") from None


def _load_weights(model: torch.nn.Module, checkpoint: dict[str, Any], path: Path) -> None:
    state = checkpoint.get("state_dict", checkpoint)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise UserError(f"the checkpoint lacks {len(missing)} weights of the model "
                        f"(e.g. {', '.join(missing[:3])}): is it for this config?",
                        source=str(path), field="checkpoint")
    if unexpected:
        raise UserError(f"the checkpoint has {len(unexpected)} weights the model lacks "
                        f"(e.g. {', '.join(unexpected[:3])}): is it for this config?",
                        source=str(path), field="checkpoint")


def _test_pipeline(pipeline: list[dict]) -> list[dict]:
    """The config's test pipeline for in-memory images: no annotation loading."""
    steps = [step for step in copy.deepcopy(pipeline) if step.get("type") != "LoadAnnotations"]
    steps[0] = {"type": "LoadImageFromNDArray"}
    for step in steps:
        if step.get("type") == "TestTimeAug":
            step["transforms"] = [[t for t in group if t.get("type") != "LoadAnnotations"]
                                  for group in step["transforms"]]
            step["transforms"] = [group for group in step["transforms"] if group]
    return steps


class MMSegAdapter(ModelAdapter):
    """Feeds each image as mmseg's own test loop would, in BGR order as ``mmcv.imread`` gives it."""

    def __init__(self, cfg: Any, info: DatasetInfo, device: torch.device) -> None:
        require_mmseg()
        self.name = cfg.name
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope
        from mmseg.registry import MODELS

        config, config_path, published = load_config(cfg)
        init_default_scope(config.get("default_scope", "mmseg"))
        model_cfg = config.model
        if cfg.tta:
            if "tta_model" not in config or "tta_pipeline" not in config:
                raise UserError(f"config {cfg.config} defines no tta_model/tta_pipeline", field="tta")
            model_cfg = copy.deepcopy(config.tta_model)
            model_cfg.module = config.model
        self.model = self._build(MODELS, model_cfg, config)
        self.checkpoint = cfg.checkpoint
        if cfg.checkpoint is not None:
            inner = self.model.module if cfg.tta else self.model
            _load_weights(inner, load_checkpoint(Path(cfg.checkpoint), cfg.allow_unsafe_checkpoint),
                          Path(cfg.checkpoint))
        self.model.to(device).eval()
        self.device = device
        pipeline = config.tta_pipeline if cfg.tta else config.test_dataloader.dataset.pipeline
        self.pipeline = Compose(_test_pipeline(pipeline))
        self.forward_pipeline = (Compose(_test_pipeline(config.test_dataloader.dataset.pipeline))
                                 if cfg.tta else self.pipeline)  # one view per image, for forward_inputs
        model_classes = self._segmentor().decode_head.num_classes
        self.class_map = class_map_table(cfg.class_map, model_classes, info)
        self.num_classes = info.num_classes if self.class_map is not None else model_classes
        self._provenance = {
            "type": "mmseg", "config": cfg.config, "config_path": str(config_path),
            "config_text": config.pretty_text, "tta": cfg.tta, "cfg_options": dict(cfg.cfg_options),
            "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None,
            "checkpoint_sha256": file_sha256(Path(cfg.checkpoint)) if cfg.checkpoint else None,
            "trained": cfg.checkpoint is not None, "model_classes": model_classes,
            "class_map": cfg.class_map, "test_cfg": dict(config.model.get("test_cfg") or {}),
        }
        if published is not None:
            self._provenance["published"] = {
                "dataset": published["dataset"],
                "mIoU": _fraction(published["mIoU"]),
                "mIoU_ms_flip": _fraction(published["mIoU(ms+flip)"])}

    @staticmethod
    def _build(registry: Any, model_cfg: Any, config: Any) -> torch.nn.Module:
        """As mmseg's init_model: no pretrained backbone download, no training config."""
        segmentor_cfg = model_cfg.get("module", model_cfg)
        segmentor_cfg.pretrained = None
        segmentor_cfg.train_cfg = None
        if "init_cfg" in segmentor_cfg.get("backbone", {}):
            segmentor_cfg.backbone.init_cfg = None
        model = registry.build(model_cfg)
        model.cfg = config
        return model

    def _segmentor(self) -> torch.nn.Module:
        return getattr(self.model, "module", self.model)

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray], ids: list[str]) -> list[torch.Tensor]:
        from mmengine.dataset import pseudo_collate

        if len({image.shape for image in images}) > 1:  # the preprocessor stacks equal sizes only
            return [self.predict([image], [id_])[0] for image, id_ in zip(images, ids)]
        data = pseudo_collate([self.pipeline({"img": np.ascontiguousarray(image[..., ::-1])})
                               for image in images])
        results = self.model.test_step(data)
        for result, id_ in zip(results, ids):
            require_finite(result.seg_logits.data[None], [id_], self.name)
        return map_classes(self.class_map, [result.pred_sem_seg.data[0].to(self.device, torch.int64)
                                            for result in results])

    @torch.inference_mode()
    def predict_with_confidence(self, images: list[np.ndarray],
                                ids: list[str]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """The label maps as ``predict`` gives them, and the predicted class's probability.

        Without TTA, the softmax of the result's ``seg_logits`` (the logits at the original size). With TTA,
        mmseg's merged result keeps one view's logits only, so the views are run here as SegTTAModel's
        ``test_step`` runs them, merged by its ``merge_preds`` (the same prediction), and the confidence is
        the mean of the views' softmax, the probabilities the prediction came from. With a class_map, the
        probability of the predicted dataset class sums its model classes'. A single-channel (sigmoid) model
        hands over none (None).
        """
        from mmengine.dataset import pseudo_collate

        if len({image.shape for image in images}) > 1:
            return with_confidence_one_at_a_time(self, images, ids)
        data = pseudo_collate([self.pipeline({"img": np.ascontiguousarray(image[..., ::-1])})
                               for image in images])
        if getattr(self._segmentor(), "out_channels", 2) == 1:
            return self.predict(images, ids), None
        if hasattr(self.model, "merge_preds"):  # SegTTAModel: each view through the segmentor, then merged
            views = [self.model.module.test_step({key: value[index] for key, value in data.items()})
                     for index in range(len(next(iter(data.values()))))]
            per_image = [list(samples) for samples in zip(*views)]
            probabilities = [torch.stack([s.seg_logits.data.float().softmax(dim=0) for s in samples]).mean(0)
                             for samples in per_image]
            for samples, id_ in zip(per_image, ids):
                for sample in samples:
                    require_finite(sample.seg_logits.data[None], [id_], self.name)
            results = self.model.merge_preds(per_image)
        else:
            results = self.model.test_step(data)
            for result, id_ in zip(results, ids):
                require_finite(result.seg_logits.data[None], [id_], self.name)
            probabilities = [result.seg_logits.data.float().softmax(dim=0) for result in results]
        predictions = [result.pred_sem_seg.data[0].to(self.device, torch.int64) for result in results]
        return top_label([p.to(self.device) for p in probabilities], predictions, self.class_map, self.num_classes)

    def forward_inputs(self, images: list[np.ndarray]) -> tuple[torch.nn.Module, tuple[torch.Tensor]]:
        """The segmentor and its data_preprocessor's batch: ``segmentor(inputs)`` is mode 'tensor', mmseg's
        ``_forward`` (backbone, neck, decode head). mmseg's benchmark.py times mode 'predict', which adds
        the slide window and the resize and argmax; those belong to the end_to_end scope here.

        Images go through the config's test pipeline (not the TTA one), so the batch has the size the
        network sees in whole-image inference.
        """
        from mmengine.dataset import pseudo_collate

        data = pseudo_collate([self.forward_pipeline({"img": np.ascontiguousarray(image[..., ::-1])})
                               for image in images])
        segmentor = self._segmentor()
        return segmentor, (segmentor.data_preprocessor(data, False)["inputs"],)

    def provenance(self) -> dict[str, Any]:
        return self._provenance


def _sizes_as_tuples(value: Any) -> Any:
    """YAML has no tuples; mmseg's configs write sizes as tuples and its transforms insist on them.

    So a list of numbers, like ``[2048, 1024]``, becomes a tuple; other lists stay lists.
    """
    if isinstance(value, dict):
        return {key: _sizes_as_tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, (int, float)) for item in value):
            return tuple(value)
        return [_sizes_as_tuples(item) for item in value]
    return value


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else percent / 100


class MMSegModelConfig(ModelBase):
    type: Literal["mmseg"]
    config: ConfigRef
    """A name from mmseg's packaged model index, or a path to a config file."""
    checkpoint: Annotated[Path, local_path(MMSEG_WEIGHTS_HINT)] | None = None
    """A local file; a URL (the index's `Weights`) is an error: segbench downloads nothing."""
    tta: bool = False
    cfg_options: dict[str, Any] = Field(default_factory=dict)
    allow_unsafe_checkpoint: bool = False
    class_map: list[int] | None = None
    """For each class the model predicts, the dataset class it counts as."""

    def input_paths(self, dataset: str) -> list[Path]:
        config = [Path(self.config)] if is_file_reference(self.config) else []
        return config + ([] if self.checkpoint is None else [self.checkpoint])


@register_model("mmseg", config=MMSegModelConfig, check=check_model, eval_ref="config",
                eval_checkpoint="checkpoint", classes=config_classes,
                describe="an mmsegmentation config (or model index name) and checkpoint, run by mmseg")
def build_mmseg(cfg: MMSegModelConfig, info: DatasetInfo, device: torch.device) -> MMSegAdapter:
    return MMSegAdapter(cfg, info, device)
