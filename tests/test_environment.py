"""What a manifest records of the machine: the versions of every package that can move a figure."""

from importlib.metadata import version

import pytest
import torch

from segbench.environment import environment


@pytest.mark.parametrize("package", ["transformers", "onnxruntime", "imagecorruptions-imaug", "numba", "torch"])
def test_the_versions_of_the_model_sources_and_corruptions_are_recorded(package):
    pytest.importorskip(package.removesuffix("-imaug").replace("-", "_"))
    assert environment(torch.device("cpu"))["versions"][package] == version(package)
