"""Dataset readers; importing this package fills ``segbench.registry.DATASETS``."""

from segbench.data import ade20k, cityscapes, folder, mmseg_dataset, pascal_voc, synthetic  # noqa: F401
