"""Model adapters; importing this package fills ``segbench.registry.MODELS``."""

from segbench.models import mmseg_adapter, predictions, torch_adapter  # noqa: F401
