"""Corrupted images for robustness benchmarks (DESIGN.md, "Robustness: corruption benchmarks").

The corruptions are those of ``imagecorruptions-imaug`` (module ``imagecorruptions``, the optional extra
``segbench[robustness]``): the 19 names of ``get_corruption_names('all')``, ImageNet-C's 15 common ones
(:data:`COMMON`) being the default.

Determinism. Each image's corruption is drawn from a seed of its own, a stable hash (``zlib.crc32``,
never Python's salted ``hash``) of (seed, image id, corruption, severity): the same four give the same
pixels in any process, order or number of workers. Version 1.1.5 of the package draws most corruptions
from numpy's *global* random state (its ``corrupt`` takes no ``seed=``), so :func:`corrupt_image` seeds
that state right before the call and restores it right after, under a lock:

- DataLoader workers are processes, each with its own numpy state: nothing is shared between them.
- Threads of one process share the state: the module lock makes seed, corrupt and restore one step, so
  two threads never interleave draws. (Code elsewhere that draws from ``np.random`` in another thread
  at the same moment is not guarded; segbench itself does not.)
- ``impulse_noise`` and ``glass_blur`` take a ``seed=`` of their own (scikit-image's generator, numba's
  state): they are given the image's seed too.

:class:`CorruptionCache` keeps corrupted images as lossless PNGs under a key holding the corruption,
severity, seed, image id, the package's version and a sha256 of the source pixels, so a changed seed or
source image is never served stale. :func:`write_corrupted_dataset` writes a corrupted copy of a dataset
laid out as ``folder`` datasets read it. :func:`robustness_table` derives CE, relative CE, mCE and
retention from a summary's rows.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import Field, field_validator

from segbench.atomic import atomic_write_bytes
from segbench.columns import Column
from segbench.config import Strict, SuitePath
from segbench.data.base import Sample, SegDataset
from segbench.errors import DataError, UserError
from segbench.images import read_image, write_label

CORRUPTIONS_ALL: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
"""Every corruption of ``imagecorruptions``, in its order: ``get_corruption_names('all')``."""
COMMON: tuple[str, ...] = CORRUPTIONS_ALL[:15]
"""ImageNet-C's 15 common corruptions: the default."""
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
SEEDED_BY_ARGUMENT = ("impulse_noise", "glass_blur")
"""Corruptions whose functions take a ``seed=`` of their own instead of drawing from numpy's global state."""
COMPILED_ON_FIRST_USE = ("glass_blur",)
"""Corruptions whose kernel numba compiles on its first call (2-3 s; once per type signature, and severities
differ in it)."""
CLEAN = "none"
"""The ``corruption`` of clean rows (their ``severity`` is 0)."""
OVERALL = "all"
"""The ``corruption`` of robustness.parquet's rows holding mCE, relative mCE and retention."""
EXTRA_HINT = "pip install 'segbench[robustness]'"

_GLOBAL_STATE_LOCK = threading.Lock()


def _package() -> Any:
    """The ``imagecorruptions`` module; a UserError naming the extra when it is missing."""
    try:
        import imagecorruptions
    except ImportError as error:
        raise UserError(f"corruptions need the package imagecorruptions-imaug ({error}); "
                        f"install it with: {EXTRA_HINT}") from None
    return imagecorruptions


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imagecorruptions-imaug")
    except PackageNotFoundError:
        return "unknown"


def check_corruption(name: str, severity: int) -> None:
    """A UserError listing the valid values for an unknown corruption or a severity outside 1..5."""
    if name not in CORRUPTIONS_ALL:
        raise UserError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS_ALL)}", field="corruption")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise UserError(f"corruption severity must be one of {', '.join(map(str, SEVERITIES))}, got {severity!r}",
                        field="severity")


def image_seed(seed: int, image_id: str, name: str, severity: int) -> int:
    """The seed of one corrupted image: crc32 of (seed, image id, corruption, severity), in [0, 2**32)."""
    return zlib.crc32(f"{int(seed)}\x00{image_id}\x00{name}\x00{int(severity)}".encode("utf-8"))


def corrupt_image(image: np.ndarray, name: str, severity: int, seed: int, image_id: str) -> np.ndarray:
    """``image`` (uint8 HxWx3, at least 32x32) corrupted by ``name`` at ``severity``: uint8 HxWx3, same size.

    Deterministic per (seed, image id, corruption, severity); see the module's notes on random state.
    """
    check_corruption(name, severity)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"image {image_id!r}: corruptions need uint8 HxWx3 images, got {image.dtype} {image.shape}")
    if image.shape[0] < 32 or image.shape[1] < 32:
        raise DataError(f"image {image_id!r}: corruptions need images of at least 32x32 pixels, "
                        f"got {image.shape[1]}x{image.shape[0]}")
    package = _package()
    own_seed = image_seed(seed, image_id, name, severity)
    kwargs = {"seed": own_seed} if name in SEEDED_BY_ARGUMENT else {}
    with _GLOBAL_STATE_LOCK:
        saved = np.random.get_state()
        try:
            np.random.seed(own_seed)
            result = package.corrupt(np.ascontiguousarray(image), severity=int(severity), corruption_name=name,
                                     **kwargs)
        finally:
            np.random.set_state(saved)
    return _as_input(np.asarray(result), image.shape)


def _as_input(result: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 HxWx3 of ``shape``: the package's ``corrupt`` already casts to uint8 after clipping to [0, 255];
    a grey result is repeated to 3 channels, and one of another size resized back (bilinear)."""
    if result.dtype != np.uint8:
        result = np.clip(np.nan_to_num(result), 0, 255).astype(np.uint8)
    if result.ndim == 2:
        result = np.repeat(result[:, :, None], 3, axis=2)
    elif result.shape[2] == 1:
        result = np.repeat(result, 3, axis=2)
    elif result.shape[2] > 3:
        result = result[:, :, :3]
    if result.shape[:2] != tuple(shape[:2]):
        resized = Image.fromarray(np.ascontiguousarray(result)).resize((shape[1], shape[0]), Image.BILINEAR)
        result = np.asarray(resized, dtype=np.uint8)
    return np.ascontiguousarray(result)


def source_fingerprint(image: np.ndarray) -> str:
    """sha256 of the source pixels with their shape and type."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG at zlib level 1: corrupted 1024x2048 images encode about 2.7x faster than at PIL's
    default 6, for about 9 % more bytes (benchmarks/corruption_cost.py)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class CorruptionCache:
    """Corrupted images kept as lossless PNGs in ``folder/<corruption>/<severity>/<key>.png``.

    The key is a sha256 of the corruption, severity, seed, image id, the package's version and the source
    pixels' sha256: a changed seed, source image or package version misses instead of being served stale.
    Files are written atomically; an unreadable one is recomputed and rewritten.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._version = package_version()

    def path(self, image: np.ndarray, name: str, severity: int, seed: int, image_id: str) -> Path:
        parts = [name, str(int(severity)), str(int(seed)), image_id, self._version, source_fingerprint(image)]
        key = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
        return self.folder / name / str(int(severity)) / f"{key}.png"

    def get(self, path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            cached = read_image(path)
        except DataError:
            return None
        return cached if cached.shape == tuple(shape) else None

    def put(self, path: Path, image: np.ndarray) -> None:
        atomic_write_bytes(path, encode_png(image))


def cached_corrupt(cache: CorruptionCache | None, image: np.ndarray, name: str, severity: int, seed: int,
                   image_id: str) -> np.ndarray:
    """:func:`corrupt_image`, served from ``cache`` when it holds the image (None: no cache)."""
    if cache is None:
        return corrupt_image(image, name, severity, seed, image_id)
    check_corruption(name, severity)
    path = cache.path(image, name, severity, seed, image_id)
    cached = cache.get(path, np.asarray(image).shape)
    if cached is not None:
        return cached
    result = corrupt_image(image, name, severity, seed, image_id)
    cache.put(path, result)
    return result


# ---------------------------------------------------------------- the suite's section, and a corrupted view


class CorruptionsConfig(Strict):
    """The suite's ``corruptions`` section: every (model, dataset) is also evaluated on corrupted images."""

    names: list[str] = Field(default_factory=lambda: list(COMMON), min_length=1)
    severities: list[int] = Field(default_factory=lambda: list(SEVERITIES), min_length=1)
    reference: str | None = None
    """A model of the suite: CE is normalised by its errors (mCE); None: unnormalised."""
    seed: int = 0
    cache: SuitePath | None = None
    """Where corrupted images are kept (lossless PNGs, keyed by content); None: the run folder's
    ``corruption_cache/``. Name one folder in several suites to corrupt each image once."""

    @field_validator("names")
    @classmethod
    def _known_names(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in CORRUPTIONS_ALL]
        if unknown:
            raise ValueError(f"unknown corruption {unknown[0]!r}; valid: {', '.join(CORRUPTIONS_ALL)}")
        return list(dict.fromkeys(names))

    @field_validator("severities")
    @classmethod
    def _known_severities(cls, severities: list[int]) -> list[int]:
        wrong = [s for s in severities if s not in SEVERITIES]
        if wrong:
            raise ValueError(f"severity {wrong[0]} is not one of {', '.join(map(str, SEVERITIES))}")
        return sorted(set(severities))

    def settings(self, name: str, severity: int) -> dict[str, Any]:
        """What a corrupted cell's pixels depend on (part of its settings, so a change redoes it)."""
        return {"name": name, "severity": severity, "seed": self.seed, "package": package_version()}


class CorruptedDataset(SegDataset):
    """``clean`` with each image corrupted by ``name`` at ``severity`` as it is loaded (in the DataLoader's
    workers), served from ``cache`` when it holds it. Labels and extras are the clean ones; so is the
    fingerprint: the data are the clean dataset's, the corruption is part of the cell's settings."""

    def __init__(self, clean: SegDataset, name: str, severity: int, seed: int,
                 cache: CorruptionCache | None) -> None:
        check_corruption(name, severity)
        _package()  # the missing extra is one line before any work, not an error per image
        self.clean, self.name, self.severity, self.seed, self.cache = clean, name, severity, seed, cache
        self.info = clean.info
        if name in COMPILED_ON_FIRST_USE:  # compiled once per process; the loader's workers, forked, inherit it
            corrupt_image(np.zeros((32, 32, 3), np.uint8), name, severity, seed, "warm-up")

    def ids(self) -> list[str]:
        return self.clean.ids()

    def load(self, index: int) -> Sample:
        sample = self.clean.load(index)
        image = cached_corrupt(self.cache, sample.image, self.name, self.severity, self.seed, sample.id)
        return Sample(sample.id, image, sample.label, sample.extras)

    def fingerprint_parts(self) -> list[str]:
        return self.clean.fingerprint_parts()


# ---------------------------------------------------------------- a corrupted copy of a dataset


def file_stem(image_id: str) -> str:
    """An image id as a flat file stem: ``/`` and ``\\`` (ids of nested datasets) become ``__``."""
    return image_id.replace("/", "__").replace("\\", "__")


def write_corrupted_dataset(dataset: Any, out: str | Path, names: Iterable[str], severities: Iterable[int],
                            seed: int = 0, advance: Callable[[int], None] | None = None) -> list[Path]:
    """Write ``dataset`` (a SegDataset) corrupted, as ``folder`` datasets lay it out:

        out/<corruption>/<severity>/images/<image id>.png   the corrupted image (lossless PNG)
        out/<corruption>/<severity>/labels/<image id>.png   its label, unchanged

    Each ``out/<corruption>/<severity>`` is the root of a ``folder`` dataset. Files are written atomically;
    ``advance(1)`` is called after each corrupted image. Returns the dataset roots written.
    """
    names, severities = list(dict.fromkeys(names)), list(dict.fromkeys(int(s) for s in severities))
    for name in names:
        for severity in severities:
            check_corruption(name, severity)
    _package()
    ids = list(dataset.ids())
    stems = [file_stem(i) for i in ids]
    if len(set(stems)) != len(stems):
        raise DataError("image ids collide once '/' is replaced by '__'; cannot lay them out flat")
    out = Path(out)
    palette = dataset.info.palette or None
    roots = [out / name / str(severity) for name in names for severity in severities]
    for index, stem in enumerate(stems):
        sample = dataset.load(index)
        for name in names:
            for severity in severities:
                root = out / name / str(severity)
                corrupted = corrupt_image(sample.image, name, severity, seed, sample.id)
                atomic_write_bytes(root / "images" / f"{stem}.png", encode_png(corrupted))
                write_label(root / "labels" / f"{stem}.png", np.asarray(sample.label), palette)
                if advance is not None:
                    advance(1)
    return roots


# ---------------------------------------------------------------- CE, relative CE, mCE, retention


def robustness_table(summary: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """One row per (model, dataset, corruption) with ``CE``, ``relative_CE`` and ``mIoU_s<severity>``, and one
    per (model, dataset) with corruption ``all`` and ``mCE``, ``relative_mCE``, ``retention``; ``note`` says
    why a figure is NaN.

    ``summary`` has columns model, dataset, corruption, severity, mIoU (clean rows: corruption ``none``,
    severity 0; rows whose mIoU is NaN count as missing). With E = 1 − mIoU over the severities s run:
    with a ``reference`` model, CE_c = Σ_s E_s,c / Σ_s E^ref_s,c and relative CE_c = Σ_s (E_s,c − E_clean)
    / Σ_s (E^ref_s,c − E^ref_clean), NaN when that denominator is 0 or less; without one, CE_c = mean_s
    E_s,c and relative CE_c = mean_s (E_s,c − E_clean). mCE and relative mCE are the means over corruptions
    of the finite values; a reference lacking rows the model has leaves them NaN. retention = mean over
    (corruption, severity) of mIoU / clean mIoU.
    """
    needed = ["model", "dataset", "corruption", "severity", "mIoU"]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks the columns {', '.join(missing)}")
    rows = summary[needed].dropna(subset=["mIoU"]).copy()
    rows["severity"] = rows["severity"].astype(int)
    repeated = rows.duplicated(["model", "dataset", "corruption", "severity"])
    if repeated.any():
        first = rows[repeated].iloc[0]
        raise ValueError(f"summary holds several rows for ({first['model']}, {first['dataset']}, "
                         f"{first['corruption']}, {first['severity']})")
    miou = {(r.model, r.dataset, r.corruption, r.severity): float(r.mIoU) for r in rows.itertuples(index=False)}
    corrupted = rows[rows["corruption"] != CLEAN]
    all_severities = sorted(corrupted["severity"].unique().tolist())
    severity_columns = [f"mIoU_s{s}" for s in all_severities]
    out: list[dict[str, Any]] = []
    for (model, dataset), group in corrupted.groupby(["model", "dataset"], sort=True):
        clean = miou.get((model, dataset, CLEAN, 0))
        ref_clean = miou.get((reference, dataset, CLEAN, 0)) if reference is not None else None
        ces, relatives, ratios, reference_gaps = [], [], [], []
        for corruption, rows_c in group.groupby("corruption", sort=True):
            severities = sorted(rows_c["severity"].tolist())
            values = [miou[(model, dataset, corruption, s)] for s in severities]
            errors = np.array([1.0 - v for v in values])
            row: dict[str, Any] = {"model": model, "dataset": dataset, "corruption": corruption}
            row.update({f"mIoU_s{s}": v for s, v in zip(severities, values)})
            notes = []
            if reference is None:
                ce = float(errors.mean())
                relative = float((errors - (1.0 - clean)).mean()) if clean is not None else np.nan
                if clean is None:
                    notes.append("no clean row")
            else:
                ref_values = [miou.get((reference, dataset, corruption, s)) for s in severities]
                if any(v is None for v in ref_values):
                    absent = [s for s, v in zip(severities, ref_values) if v is None]
                    reference_gaps.append(f"{corruption} severity {', '.join(map(str, absent))}")
                    notes.append(f"reference {reference} has no rows for severity {', '.join(map(str, absent))}")
                    ce = relative = np.nan
                else:
                    ref_errors = np.array([1.0 - v for v in ref_values])
                    ce = float(errors.sum() / ref_errors.sum()) if ref_errors.sum() > 0 else np.nan
                    if not np.isfinite(ce):
                        notes.append(f"reference {reference} has no error on {corruption}")
                    if clean is None or ref_clean is None:
                        relative = np.nan
                        notes.append("no clean row" if clean is None else f"reference {reference} has no clean row")
                    else:
                        denominator = float((ref_errors - (1.0 - ref_clean)).sum())
                        if denominator > 0:
                            relative = float((errors - (1.0 - clean)).sum() / denominator)
                        else:
                            relative = np.nan
                            notes.append(f"relative_CE undefined: reference {reference}'s error does not grow "
                                         f"under {corruption}")
            row.update(CE=ce, relative_CE=relative, note="; ".join(notes) or None)
            out.append(row)
            ces.append(ce)
            relatives.append(relative)
            if clean is not None and clean > 0:
                ratios.extend(v / clean for v in values)
        notes = []
        if reference is not None and ref_clean is None:
            reference_gaps.append("clean images")
        if reference_gaps:
            mce = relative_mce = np.nan
            notes.append(f"reference {reference} has no rows for {'; '.join(reference_gaps)}: mCE not comparable")
        else:
            mce = _finite_mean(ces)
            relative_mce = _finite_mean(relatives)
        if clean is None or clean <= 0:
            retention = np.nan
            notes.append("no clean row" if clean is None else "clean mIoU is 0")
        else:
            retention = float(np.mean(ratios))
        out.append({"model": model, "dataset": dataset, "corruption": OVERALL, "mCE": mce,
                    "relative_mCE": relative_mce, "retention": retention, "note": "; ".join(notes) or None})
    columns = ["model", "dataset", "corruption", "CE", "relative_CE", *severity_columns, "mCE", "relative_mCE",
               "retention", "note"]
    table = pd.DataFrame(out, columns=columns)
    numeric = [c for c in columns if c not in ("model", "dataset", "corruption", "note")]
    table[numeric] = table[numeric].astype(float)
    return table.reset_index(drop=True)


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else np.nan


def robustness_columns(reference: str | None) -> list[Column]:
    """The figures of robustness.parquet, declared once: with a ``reference`` model, CE and relative CE are
    ratios to its errors (its own are 1); without one, mean errors (fractions). ``leaderboard``: the
    figures of the rows of corruption :data:`OVERALL`, the ones a robustness leaderboard shows."""
    if reference is None:
        unit, how = "fraction", "averaged over the severities"
    else:
        unit, how = "ratio", f"summed over the severities, over the same sum of the reference model {reference}"
    return [
        Column("CE", unit, "lower", f"corruption error: the error E = 1 - mIoU {how}", group="robustness"),
        Column("relative_CE", unit, "lower",
               f"relative corruption error: the error the corruption adds, E - E_clean, {how}",
               group="robustness"),
        Column("mCE", unit, "lower", "the mean of CE over the corruptions (its finite values)",
               group="robustness", leaderboard=True),
        Column("relative_mCE", unit, "lower", "the mean of relative CE over the corruptions (its finite values)",
               group="robustness", leaderboard=True),
        Column("retention", "fraction", "higher", "the mean over corruptions and severities of mIoU / clean mIoU",
               group="robustness", leaderboard=True),
    ]
