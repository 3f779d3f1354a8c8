import builtins
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest
import yaml

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


def test_suite_that_is_not_utf8_is_refused_with_the_offset(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(UserError) as info:
        load_suite(path)
    assert info.value.message == "not UTF-8 text: byte 0xe9 at byte offset 9"
    assert (info.value.source, info.value.line) == (str(path), 1)


def test_control_character_is_one_line_with_its_line(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, "name: demo\nmodels: \x00\n"))
    assert info.value.message == ("malformed YAML: unacceptable character #x0000: "
                                  "special characters are not allowed")
    assert info.value.line == 2


def test_duplicate_top_level_key_refused_with_both_lines(tmp_path):
    path = write(tmp_path, VALID + "    name: other\n")
    with pytest.raises(UserError) as info:
        load_suite(path)
    assert info.value.message == "duplicate key 'name' (first at line 1)"
    assert (info.value.source, info.value.field, info.value.line) == (str(path), "name", 17)


def test_duplicate_key_inside_a_model_refused_with_both_lines(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("arch: unet", "arch: unet\n        arch: fcn")))
    assert info.value.message == "duplicate key 'arch' (first at line 13)"
    assert (info.value.field, info.value.line) == ("models[0].arch", 14)


ANCHORS = """\
    name: demo
    datasets:
      - name: shapes
        type: synthetic
    models:
      - &python
        name: a
        type: python
        factory: pkg.nets:build
        num_classes: 3
        mean: &mean [1.0, 2.0, 3.0]
        kwargs: &opts {flip: true}
      - <<: *python
        name: b
        std: *mean
"""


def test_anchors_aliases_and_merge_keys_still_load(tmp_path):
    first, second = load_suite(write(tmp_path, ANCHORS)).models
    assert (first.name, second.name) == ("a", "b")
    assert first.mean == second.mean == second.std == (1.0, 2.0, 3.0)
    assert second.factory == "pkg.nets:build" and second.kwargs == {"flip": True}


def test_error_under_an_alias_points_at_the_alias(tmp_path):
    text = ANCHORS.replace("{flip: true}", "{flip: true, colour: red}") + "        inference: *opts\n"
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, text))
    assert "unknown key 'colour'" in info.value.message
    assert (info.value.field, info.value.line) == ("models[1].inference.colour", 16)


def test_alias_bomb_refused_quickly_in_bounded_memory(tmp_path):
    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 values
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    code = dedent("""\
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
        from segbench.errors import UserError
        from segbench.suite import load_suite
        try:
            load_suite(sys.argv[1])
        except UserError as error:
            print(error)
    """)
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"{path}: the suite expands to more than 100000 values "
                             "through YAML aliases (&anchor / *alias)\n")


def test_alias_inside_its_own_anchor_refused(tmp_path):
    with pytest.raises(UserError, match="expands to more than 100000 values through YAML aliases"):
        load_suite(write(tmp_path, "name: demo\nloop: &loop [*loop]\n"))


def test_deeply_nested_yaml_refused(tmp_path):
    with pytest.raises(UserError, match="nested too deeply"):
        load_suite(write(tmp_path, "name: demo\nmodels: " + "[" * 2000 + "]" * 2000 + "\n"))


def test_double_underscore_in_model_name_refused(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("name: unet", "name: u__net")))
    assert "'__' separates model and dataset in cell ids" in info.value.message
    assert (info.value.field, info.value.line) == ("models[0].name", 11)


def test_double_underscore_in_dataset_name_refused(tmp_path):
    with pytest.raises(UserError) as info:
        load_suite(write(tmp_path, VALID.replace("name: shapes", "name: sha__pes")))
    assert "'__' separates model and dataset in cell ids" in info.value.message
    assert (info.value.field, info.value.line) == ("datasets[0].name", 3)


def test_resolve_suite_reads_the_file_once(tmp_path, monkeypatch):
    from segbench.api import resolve_suite  # imports the runner and torch: only this test needs them
    path = write(tmp_path, VALID)
    opened = []
    real_open = io.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    suite, source = resolve_suite(path)
    assert opened.count(str(path)) == 1
    text = dedent(VALID)
    assert source == {"path": str(path.resolve()), "text": text, "data": yaml.safe_load(text)}
    assert suite == load_suite(path)


def counted(calls: dict[str, int], name: str, function: Callable) -> Callable:
    """``function``, counting its calls in ``calls[name]``."""
    def counting(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)
    return counting


ONE_CELL = """\
    name: once
    device: cpu
    num_workers: 0
    datasets:
      - {name: shapes, type: synthetic, num_images: 2, height: 16, width: 16}
    models:
      - {name: fcn, type: builtin, arch: fcn}
"""


def test_segbench_run_reads_parses_and_validates_its_suite_once(tmp_path, monkeypatch):
    """Issue #14 (5a): one `segbench run`, in process through the CLI, reads the file, parses its YAML and
    validates the suite once. Each function is counted in every segbench module that holds it."""
    from typer.testing import CliRunner

    import segbench.api  # noqa: F401  (imports the runner and torch: only these tests need them)
    from segbench.cli import app

    calls: dict[str, int] = {}
    for module, name in (("segbench.suite", "_read_text"), ("segbench.suite", "_parse_yaml"),
                         ("segbench.suite", "parse_suite"), ("segbench.suite", "read_suite"),
                         ("segbench.api", "resolve_suite")):
        original = getattr(sys.modules[module], name)
        calls[name] = 0
        for key, loaded in list(sys.modules.items()):
            if key.startswith("segbench") and getattr(loaded, name, None) is original:
                monkeypatch.setattr(loaded, name, counted(calls, name, original))
    suite = write(tmp_path, ONE_CELL)
    result = CliRunner().invoke(app, ["run", str(suite), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert calls == dict.fromkeys(calls, 1)
    assert (tmp_path / "run" / "cells" / "fcn__shapes" / "cell.json").is_file()


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
