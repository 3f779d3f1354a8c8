"""Hugging Face transformers models: parity with transformers' own inference, a run end to end, bad input.

The models are tiny, built from configs with seeded random weights and written with save_pretrained
into tmp_path: nothing is downloaded.
"""

import json
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

import segbench  # noqa: E402
from segbench.api import execute  # noqa: E402
from segbench.errors import DataError, UserError  # noqa: E402
from segbench.registry import MODELS, load_plugins  # noqa: E402
from segbench.types import DatasetInfo  # noqa: E402

LABELS = 5
SYNTHETIC_CLASSES = 6  # segbench.data.synthetic.CLASS_NAMES
CPU = torch.device("cpu")


def save_segformer(folder: Path, num_labels: int, seed: int = 0) -> Path:
    """A two-stage SegFormer with a 64x64 processor (SegformerImageProcessorPil: no torchvision here)."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    from transformers.models.segformer import SegformerImageProcessorPil

    torch.manual_seed(seed)
    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                             decoder_hidden_size=16, num_labels=num_labels,
                             id2label={i: f"seg_class_{i}" for i in range(num_labels)})
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def save_mask2former(folder: Path, num_labels: int, seed: int = 0) -> Path:
    """A Mask2Former on a one-block-per-stage Swin, given as a config (no pretrained backbone to fetch).

    init_std 1.0: with the default 0.02 the random mask queries are flat and one class wins everywhere.
    """
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former import Mask2FormerImageProcessorPil

    torch.manual_seed(seed)
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2,
                               num_attention_heads=2, dim_feedforward=32, num_queries=8, num_labels=num_labels,
                               init_std=1.0)
    Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    Mask2FormerImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def save_oneformer(folder: Path, num_labels: int, seed: int = 2) -> Path:
    """A OneFormer on the same Swin, with its processor: the image processor and a CLIP tokenizer whose
    vocabulary is the 256 byte symbols (no merges), enough to encode "the task is semantic".

    The decoder's matrices are re-drawn with std 1: at OneFormer's own init every query votes for one class.
    """
    from transformers import (CLIPTokenizer, OneFormerConfig, OneFormerForUniversalSegmentation,
                              OneFormerProcessor, SwinConfig)
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.oneformer import OneFormerImageProcessorPil

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in bytes_to_unicode().values():
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    torch.manual_seed(seed)
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = OneFormerConfig(backbone_config=backbone, num_queries=8, text_encoder_width=32,
                             text_encoder_num_layers=1, text_encoder_vocab_size=len(vocab),
                             text_encoder_proj_layers=1, text_encoder_n_ctx=4, conv_dim=32, mask_dim=32,
                             hidden_dim=32, encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2,
                             num_attention_heads=2, dim_feedforward=32, query_dec_layers=1, num_labels=num_labels,
                             task_seq_len=16, text_encoder_context_length=16)
    model = OneFormerForUniversalSegmentation(config)
    with torch.no_grad():
        for weight in model.model.transformer_module.parameters():
            if weight.dim() > 1:
                weight.normal_(0, 1.0)
    model.save_pretrained(folder)
    OneFormerProcessor(image_processor=OneFormerImageProcessorPil(size={"height": 64, "width": 64}, num_text=4),
                       tokenizer=CLIPTokenizer(vocab=vocab, merges=[]), max_seq_length=16,
                       task_seq_length=16).save_pretrained(folder)
    return folder


MODEL_CLASSES = {"segformer": "SegformerForSemanticSegmentation",
                 "mask2former": "Mask2FormerForUniversalSegmentation",
                 "oneformer": "OneFormerForUniversalSegmentation"}


@pytest.fixture(scope="module")
def segformer(tmp_path_factory) -> Path:
    return save_segformer(tmp_path_factory.mktemp("segformer"), LABELS)


@pytest.fixture(scope="module")
def mask2former(tmp_path_factory) -> Path:
    return save_mask2former(tmp_path_factory.mktemp("mask2former"), LABELS)


@pytest.fixture(scope="module")
def oneformer(tmp_path_factory) -> Path:
    return save_oneformer(tmp_path_factory.mktemp("oneformer"), LABELS)


def image(height: int, width: int, seed: int) -> np.ndarray:
    """Gradients and a checkerboard under noise: structure for the random models to split into classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    planes = [255 * xx / width, 255 * yy / height, 255 * ((xx // 10 + yy // 10) % 2)]
    noisy = np.stack(planes, axis=-1) + rng.normal(0, 20, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def transformers_outputs(folder: Path, model_type: str, images: list[np.ndarray]) -> tuple:
    """transformers' documented inference on one batch, up to the model: its processor and outputs.

    OneFormer's processor (image processor and tokenizer) is told the task.
    """
    model = getattr(transformers, MODEL_CLASSES[model_type]).from_pretrained(folder).eval()
    if model_type == "oneformer":
        processor = transformers.OneFormerProcessor.from_pretrained(folder)
        inputs = processor(images=images, task_inputs=["semantic"] * len(images), return_tensors="pt")
    else:
        processor = transformers.AutoImageProcessor.from_pretrained(folder)
        inputs = processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        return processor, model(**inputs)


def transformers_inference(folder: Path, model_type: str, images: list[np.ndarray]) -> list[torch.Tensor]:
    """... then post_process_semantic_segmentation with each image's size."""
    processor, outputs = transformers_outputs(folder, model_type, images)
    return processor.post_process_semantic_segmentation(outputs, target_sizes=[i.shape[:2] for i in images])


def adapter(folder: Path, num_classes: int = LABELS, **fields):
    load_plugins()
    source = MODELS["hf"]
    config = source.config(name="hf-model", type="hf", path=folder, **fields)
    info = DatasetInfo("data", num_classes, [f"c{i}" for i in range(num_classes)])
    return source.build(config, info, CPU)


@pytest.mark.parametrize("model_type", ["segformer", "mask2former", "oneformer"])
def test_predictions_equal_transformers_inference(model_type, request):
    folder = request.getfixturevalue(model_type)
    ours = adapter(folder)
    single = [image(48, 80, 0), image(70, 50, 1)]  # different sizes: one at a time
    pair = [image(56, 56, 2), image(56, 56, 3)]  # equal sizes: one batch
    expected = [transformers_inference(folder, model_type, [i])[0] for i in single]
    expected += transformers_inference(folder, model_type, pair)
    predictions = ours.predict(single, ["a", "b"]) + ours.predict(pair, ["c", "d"])
    for got, want, source in zip(predictions, expected, single + pair):
        assert got.dtype == torch.int64 and got.device == CPU and got.shape == source.shape[:2]
        assert len(torch.unique(want)) >= 2  # the comparison has power only if the model splits the image
        assert torch.equal(got, want)
    assert ours.num_classes == LABELS
    record = ours.provenance()
    assert record["model_class"] == MODEL_CLASSES[model_type] and record["model_type"] == model_type
    assert record["processor_class"] == type(transformers.AutoProcessor.from_pretrained(folder)).__name__


@pytest.mark.parametrize("model_type", ["segformer", "mask2former", "oneformer"])
def test_forward_inputs_run_the_model_on_processed_inputs(model_type, request):
    """What the profiler's model scope calls, ``network(*args)``, is the model on the processor's batch."""
    folder = request.getfixturevalue(model_type)
    ours = adapter(folder)
    images = [image(48, 80, 0)] * 2
    network, args = ours.forward_inputs(images)
    assert args[0].shape == (2, 3, 64, 64)  # pixel_values, resized
    with torch.inference_mode():
        got = network(*args)
    _, want = transformers_outputs(folder, model_type, images)
    name = "logits" if model_type == "segformer" else "masks_queries_logits"
    assert torch.equal(getattr(got, name), getattr(want, name))


def test_a_separate_processor_folder_is_used(tmp_path, segformer):
    model_dir, processor_dir = tmp_path / "model", tmp_path / "processor"
    shutil.copytree(segformer, model_dir)
    processor_dir.mkdir()
    (model_dir / "preprocessor_config.json").rename(processor_dir / "preprocessor_config.json")
    ours = adapter(model_dir, processor=processor_dir)
    images = [image(48, 80, 0)]
    assert torch.equal(ours.predict(images, ["a"])[0], adapter(segformer).predict(images, ["a"])[0])
    assert ours.provenance()["processor"] == str(processor_dir)


def test_class_map_maps_model_classes_to_dataset_classes(segformer):
    mapped = adapter(segformer, num_classes=SYNTHETIC_CLASSES, class_map=[0, 2, 3, 4, 5])
    plain = adapter(segformer)
    images = [image(48, 80, 0)]
    assert mapped.num_classes == SYNTHETIC_CLASSES
    lut = torch.tensor([0, 2, 3, 4, 5])
    assert torch.equal(mapped.predict(images, ["a"])[0], lut[plain.predict(images, ["a"])[0]])


def test_nothing_reaches_the_network(segformer, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    predictions = adapter(segformer).predict([image(48, 80, 0)], ["a"])
    assert predictions[0].shape == (48, 80)


def test_weights_without_the_head_are_refused_not_run_with_a_random_one(tmp_path, segformer):
    """A backbone checkpoint (SegformerModel) loaded for segmentation: transformers would init the head."""
    folder = tmp_path / "backbone"
    transformers.SegformerModel(transformers.SegformerConfig.from_pretrained(segformer)).save_pretrained(folder)
    shutil.copy(segformer / "preprocessor_config.json", folder)
    with pytest.raises(UserError, match=r"lack \d+ weights of SegformerForSemanticSegmentation.*decode_head"):
        adapter(folder)


def test_non_finite_logits_name_the_model_and_image(segformer):
    ours = adapter(segformer)

    def poison(module, args, output):
        output.logits[1, 0, 0, 0] = float("nan")
        return output

    ours.model.register_forward_hook(poison)
    with pytest.raises(DataError, match=r"'hf-model'.*'second'"):
        ours.predict([image(48, 80, 0), image(48, 80, 1)], ["first", "second"])


# ---------------------------------------------------------------- through the runner

def suite_dict(models: list[dict], **extra) -> dict:
    return {"name": "hf", "device": "cpu", "batch_size": 2, "num_workers": 0,
            "datasets": [{"name": "shapes", "type": "synthetic", "num_images": 3, "height": 24, "width": 40}],
            "models": models, **extra}


@pytest.fixture(scope="module")
def six_labels(tmp_path_factory) -> Path:
    """A SegFormer with as many labels as the synthetic dataset has classes."""
    return save_segformer(tmp_path_factory.mktemp("segformer6"), SYNTHETIC_CLASSES)


def test_a_suite_runs_hf_models_end_to_end(tmp_path, six_labels, segformer):
    models = [{"name": "segformer", "type": "hf", "path": str(six_labels)},
              {"name": "mapped", "type": "hf", "path": str(segformer), "class_map": [0, 1, 2, 3, 5]}]
    efficiency = {"warmup": 0, "iters": 1}
    outcome = execute(suite_dict(models, efficiency=efficiency), run_dir=tmp_path / "run")
    assert outcome.statuses == {"segformer__shapes": "complete", "mapped__shapes": "complete"}, outcome.errors
    record = json.loads((tmp_path / "run" / "cells" / "segformer__shapes" / "cell.json").read_text())
    provenance = record["provenance"]
    assert provenance["id2label"] == {str(i): f"seg_class_{i}" for i in range(SYNTHETIC_CLASSES)}
    assert provenance["type"] == "hf" and provenance["trained"] is True
    assert set(provenance["weights_sha256"]) == {"model.safetensors"}
    summary = segbench.load(tmp_path / "run").summary.set_index("model")
    assert np.isfinite(summary.loc["segformer", "mIoU"])
    for scope in ("", "model_"):  # the profiler ran both scopes: forward_inputs and predict
        assert summary.loc["segformer", f"{scope}efficiency_status"] == "ok"
        assert summary.loc["segformer", f"{scope}gflops_per_image"] > 0


def test_a_changed_processor_redoes_the_cell_on_resume(tmp_path, six_labels):
    folder = shutil.copytree(six_labels, tmp_path / "model")
    suite = suite_dict([{"name": "segformer", "type": "hf", "path": str(folder)}])
    run_dir = tmp_path / "run"
    assert execute(suite, run_dir=run_dir).statuses == {"segformer__shapes": "complete"}
    assert execute(suite, run_dir=run_dir).statuses == {"segformer__shapes": "skipped"}
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    processor["size"] = {"height": 32, "width": 32}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    assert execute(suite, run_dir=run_dir).statuses == {"segformer__shapes": "complete"}


@pytest.mark.parametrize("class_map, message", [
    (None, "the model predicts 5 classes but dataset 'shapes' has 6; give a class_map (model class -> dataset "
           "class)"),
    ([0, 1, 2], "class_map must list, for each of the model's 5 classes, a dataset class in [0, 6)"),
    ([0, 1, 2, 3, 6], "class_map must list, for each of the model's 5 classes, a dataset class in [0, 6)"),
])
def test_classes_that_do_not_fit_the_dataset_are_refused_before_work(tmp_path, segformer, class_map, message):
    """The 5 labels of the model's config.json against the 6 synthetic classes, without loading the model."""
    model = {"name": "five", "type": "hf", "path": str(segformer), "class_map": class_map}
    with pytest.raises(UserError) as info:
        segbench.run(suite_dict([model]), run_dir=tmp_path / "run")
    assert info.value.message == message and info.value.field == "models[0].class_map (five)"
    assert not (tmp_path / "run").exists()


def without(folder: Path, target: Path, name: str) -> Path:
    shutil.copytree(folder, target)
    (target / name).unlink()
    return target


@pytest.mark.parametrize("case, field, message", [
    ("missing folder", "path", "model folder not found"),
    ("no config.json", "path", "config.json not found"),
    ("no weights", "path", "no weights"),
    ("no preprocessor_config.json", "path", "preprocessor_config.json not found"),
    ("processor folder without it", "processor", "preprocessor_config.json not found"),
])
def test_missing_files_are_named_and_nothing_is_written(tmp_path, segformer, case, field, message):
    model = {"name": "m", "type": "hf", "path": str(segformer)}
    if case == "missing folder":
        model["path"] = str(tmp_path / "absent")
    elif case == "no config.json":
        model["path"] = str(without(segformer, tmp_path / "copy", "config.json"))
    elif case == "no weights":
        model["path"] = str(without(segformer, tmp_path / "copy", "model.safetensors"))
    elif case == "no preprocessor_config.json":
        model["path"] = str(without(segformer, tmp_path / "copy", "preprocessor_config.json"))
    else:
        (tmp_path / "processor").mkdir()
        model["processor"] = str(tmp_path / "processor")
    with pytest.raises(UserError, match=message) as info:
        segbench.run(suite_dict([model]), run_dir=tmp_path / "run")
    assert info.value.field == f"models[0].{field} (m)"
    assert not (tmp_path / "run").exists()


def test_a_config_that_is_no_segmentation_model_is_refused_before_any_work(tmp_path, segformer):
    folder = shutil.copytree(segformer, tmp_path / "copy")
    config = json.loads((folder / "config.json").read_text())
    transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                            intermediate_size=8).save_pretrained(folder)
    assert config["model_type"] == "segformer"
    model = {"name": "m", "type": "hf", "path": str(folder)}
    with pytest.raises(UserError, match="'bert'.*not a segmentation model"):
        segbench.run(suite_dict([model]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_without_transformers_the_check_names_the_extra(tmp_path, segformer, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` meets when missing
    model = {"name": "m", "type": "hf", "path": str(segformer)}
    with pytest.raises(UserError, match=r"pip install 'segbench\[hf\]'") as info:
        segbench.run(suite_dict([model]), run_dir=tmp_path / "run")
    assert info.value.field == "models[0].type (m)"
    assert not (tmp_path / "run").exists()
