from pathlib import Path
from textwrap import dedent

import pytest

from segbench.errors import UserError
from segbench.suite import load_suite, parse_suite


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(dedent(text))
    return path


VALID = """\
    name: demo
    datasets:
      - name: shapes
        type: synthetic
        num_images: 4
      - name: mine
        type: folder
        root: data/mine
        num_classes: 3
    models:
      - name: unet
        type: builtin
        arch: unet
      - name: saved
        type: predictions
        root: preds/{dataset}
"""


def test_valid_suite_resolves_paths_against_its_folder(tmp_path):
    suite = load_suite(write(tmp_path, VALID))
    assert suite.datasets[1].root == tmp_path / "data" / "mine"
    assert suite.models[1].root == str(tmp_path / "preds" / "{dataset}")
    assert [cell.id for cell in suite.cells()] == [
        "unet__shapes", "unet__mine", "saved__shapes", "saved__mine"]
    assert suite.models[0].weights == "demo" and suite.batch_size == 4


def test_env_vars_expand_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_DATA", "/data/root")
    suite = load_suite(write(tmp_path, VALID.replace("data/mine", "${SEGBENCH_DATA}/mine")))
    assert suite.datasets[1].root == Path("/data/root/mine")


def test_unset_env_var_names_variable_field_and_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    path = write(tmp_path, VALID.replace("data/mine", "${NOPE_NOT_SET}/mine"))
    with pytest.raises(UserError) as info:
        load_suite(path)
    assert "NOPE_NOT_SET" in str(info.value)
    assert info.value.field == "datasets[1].root" and info.value.line == 8


def test_unknown_key_named_with_its_line(tmp_path):
    path = write(tmp_path, VALID.replace("num_classes: 3\n", "num_classes: 3\n        colour: red\n"))
    with pytest.raises(UserError) as info:
        load_suite(path)
    error = info.value
    assert "unknown key 'colour'" in error.message
    assert (error.field, error.line, error.source) == ("datasets[1].colour", 10, str(path))


def test_wrong_type_named_with_its_line(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("num_images: 4", "num_images: many")))
    assert (info.value.field, info.value.line) == ("datasets[0].num_images", 5)
    assert "integer" in info.value.message


def test_unknown_entry_type_lists_known_types(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("type: builtin", "type: keras")))
    assert (info.value.field, info.value.line) == ("models[0].type", 12)
    assert "'builtin'" in info.value.message and "'keras'" in info.value.message


def test_unknown_arch_lists_known_archs(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("arch: unet", "arch: segformer")))
    assert info.value.field == "models[0].arch"
    assert "unet" in info.value.message and "fcn" in info.value.message


def test_missing_required_field(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("    num_classes: 3\n", "")))
    assert info.value.field == "datasets[1].num_classes"
    assert "required" in info.value.message.lower()


def test_duplicate_names_refused(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("name: mine", "name: shapes")))
    assert "shapes" in info.value.message and info.value.field == "datasets"


def test_malformed_yaml_gives_its_line(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, "name: x\ndatasets: [\n  - a: 1\n"))
    assert "malformed YAML" in info.value.message and info.value.line == 3


def test_slide_needs_crop_and_stride(tmp_path):
    text = VALID.replace("arch: unet", "arch: unet\n        inference: {mode: slide}")
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, text))
    assert info.value.field == "models[0].inference" and "crop_size" in info.value.message


def test_missing_suite_file(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        load_suite(tmp_path / "absent.yaml")


def test_mapping_api_and_digest_stability():
    data = {"name": "t", "datasets": [{"name": "s", "type": "synthetic"}],
            "models": [{"name": "m", "type": "builtin", "arch": "fcn"}]}
    assert parse_suite(data).digest() == parse_suite(dict(data)).digest()
    changed = {**data, "datasets": [{"name": "s", "type": "synthetic", "seed": 1}]}
    assert parse_suite(changed).digest() != parse_suite(data).digest()


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.glob("suites/*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_suites_are_valid(path, monkeypatch):
    monkeypatch.setenv("SEGBENCH_DATA", "/data")
    monkeypatch.setenv("SEGBENCH_CHECKPOINTS", "/checkpoints")
    suite = load_suite(path)
    assert suite.name == path.stem and suite.cells()
