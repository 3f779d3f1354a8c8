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
