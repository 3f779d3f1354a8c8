"""What the mmseg model source and the mmseg dataset type both need, kept below both.

Readers know no adapters (DESIGN.md, "The house is open"): ``segbench.data.mmseg_dataset``
and ``segbench.models.mmseg_adapter`` each import this module, never each other.
mmseg itself is imported only when these functions are called.
"""

from __future__ import annotations

from pathlib import Path

from segbench.errors import UserError

INSTALL_HINT = ("type 'mmseg' (model or dataset) needs mmsegmentation 1.2.2, mmengine 0.10.7 and mmcv 2.1.0 "
                "built with its ops: run `make install` in the segbench checkout (it builds mmcv, "
                "10-15 minutes the first time), or see the README section 'Installing mmsegmentation'")


def require_mmseg() -> None:
    """A UserError saying how to install mmseg, before any work, when it is missing or broken."""
    try:
        import mmcv.ops  # noqa: F401  (mmcv-lite lacks the compiled ops mmseg.models needs)
        import mmengine  # noqa: F401
        import mmseg.models  # noqa: F401
    except ImportError as error:
        raise UserError(f"{INSTALL_HINT} ({type(error).__name__}: {error})") from None


def mim_root() -> Path:
    """mmseg's packaged files (configs, model index): ``<mmseg>/.mim``."""
    import mmseg
    return Path(mmseg.__file__).parent / ".mim"
