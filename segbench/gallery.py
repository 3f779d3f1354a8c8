"""Pictures of saved predictions: ``segbench show``.

A gallery is one self-contained HTML file. Per image, a row of the image, its
ground truth, and for each model its prediction and its error map (wrong
pixels red, ignored pixels grey), with the image's own figures under each
prediction. Pictures are embedded as small thumbnails; a click shows the
full-size picture, also embedded (or bounded by ``full_max``: full-size
photographs are most of a gallery's bytes). The images and labels are read again from
the dataset as the run's cells recorded it (``cell.json``'s resolved
settings), the predictions from ``cells/<id>/predictions/``.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import ValidationError

from segbench.columns import Catalogue, Column
from segbench.data.base import SegDataset
from segbench.images import read_label
from segbench.errors import UserError
from segbench.models.predictions import prediction_path
from segbench.registry import DATASETS, load_plugins
from segbench.report import complete_cells, format_value, results_catalogue, trained_legend, trained_marks
from segbench.store import RunResults

THUMB_BOX = (320, 240)  # width, height: thumbnails fit in it, never enlarged
PHOTO_QUALITY = 85  # JPEG quality of the images; label maps and error maps are palette PNGs
IGNORED_GREY = (150, 150, 150)
WRONG_RED = (230, 25, 25)
CORRECT_WHITE = (255, 255, 255)
SAVE_HINT = ("set `save_predictions: true` in the suite (or on a model) and run it again; "
             "predictions then go to cells/<cell id>/predictions/")


@dataclass
class Source:
    """What a gallery of one dataset draws from: the dataset, the models shown and their predictions."""

    dataset: SegDataset
    models: list[str]
    predictions: dict[str, Path]  # model -> its folder of prediction PNGs
    per_image: pd.DataFrame  # this dataset's rows of the shown models
    columns: Catalogue  # the runs' column catalogue: what each per-image figure is
    notes: list[str] = field(default_factory=list)
    marks: dict[str, str] = field(default_factory=dict)  # after a model's name: not known to be trained

    def label(self, model: str) -> str:
        """The model's name with its mark (:func:`segbench.report.trained_marks`)."""
        return model + self.marks.get(model, "")

    def index(self, image_id: str) -> int:
        return self.dataset.ids().index(image_id)


@dataclass
class Row:
    image_id: str
    note: str  # why the image was chosen, with the figure that chose it


@dataclass
class Section:
    title: str
    anchor: str
    rows: list[Row]


# ---------------------------------------------------------------- where the pictures come from

def _complete_cells(results: RunResults) -> dict[tuple[str, str], tuple[Path, dict]]:
    """The complete clean cells' prediction folders (whether or not they exist) and cell.json records, by
    (model, dataset) (:func:`segbench.report.complete_cells`): galleries show the clean images."""
    return {key: (store.predictions_dir(cell_id), record)
            for key, (store, cell_id, record) in complete_cells(results).items()}


def _saved_predictions(cells: dict[tuple[str, str], tuple[Path, dict]]) -> dict[tuple[str, str], Path]:
    """The prediction folders of the complete cells (:func:`_complete_cells`) that saved them."""
    return {key: folder for key, (folder, _) in cells.items() if folder.is_dir()}


def open_source(results: RunResults, dataset: str | None = None, models: list[str] | None = None) -> Source:
    """The dataset (one of the run's, or the only one) and models (by default those with predictions), on
    the clean images."""
    results = results.clean()
    if results.per_image.empty:
        raise UserError("no results in these run folders: they hold no complete cell", source=str(results.root))
    names = list(dict.fromkeys(results.per_image["dataset"]))
    dataset = _chosen_dataset(names, dataset)
    rows = results.per_image[results.per_image["dataset"] == dataset]
    known = list(dict.fromkeys(rows["model"]))
    cells = _complete_cells(results)
    saved = {model: folder for (model, name), folder in _saved_predictions(cells).items() if name == dataset}
    notes = []
    if models:
        unknown = [m for m in models if m not in known]
        if unknown:
            raise UserError(f"no model {', '.join(map(repr, unknown))} on dataset {dataset!r}; "
                            f"these runs have: {', '.join(known)}", field="model")
        missing = [m for m in models if m not in saved]
    else:
        models = [m for m in known if m in saved]
        missing = [m for m in known if m not in saved]
        if missing and models:
            notes.append(f"not shown (no saved predictions): {', '.join(missing)}")
            missing = []
    if missing or not models:
        lacking = ", ".join(missing or known)
        raise UserError(f"no saved predictions for {lacking} on dataset {dataset!r}: {SAVE_HINT}",
                        source=str(results.root))
    record = cells[(models[0], dataset)][1]
    data = _open_dataset(record, dataset, results.root)
    if data.fingerprint() != record.get("dataset_fingerprint"):
        notes.append(f"dataset {dataset!r} has changed since the run (its fingerprint differs): "
                     "the pictures may not match the figures")
    marks = trained_marks(results.summary[results.summary["dataset"] == dataset])
    return Source(data, list(models), {m: saved[m] for m in models},
                  rows[rows["model"].isin(models)], results_catalogue(results), notes, marks)


def _chosen_dataset(names: list[str], dataset: str | None) -> str:
    if dataset is None:
        if len(names) > 1:
            raise UserError(f"these runs have several datasets; choose one with --dataset: {', '.join(names)}",
                            field="dataset")
        return names[0]
    if dataset not in names:
        raise UserError(f"no dataset {dataset!r} in these runs; they have: {', '.join(names)}", field="dataset")
    return dataset


def _open_dataset(record: dict, dataset: str, root: Path) -> SegDataset:
    """The dataset as a cell read it, from the resolved settings in its cell.json ``record``."""
    load_plugins()
    try:
        settings = record["settings"]["dataset"]
        declared = DATASETS[settings["type"]]
        return declared.build(declared.config.model_validate(settings))
    except (UserError, ValidationError, KeyError, TypeError) as error:
        raise UserError(f"cannot open dataset {dataset!r} as the run recorded it, and the gallery needs its "
                        f"images and labels: {error}", source=str(root)) from None


# ---------------------------------------------------------------- choosing the images

def per_image_metrics(source: Source) -> list[str]:
    """The per-image figures a gallery can rank by: the declared per-image columns with a direction that
    hold one number per image (mIoU, aAcc, mBF, mHD95, ...)."""
    return [c.name for c in _per_image_columns(source)]


def _per_image_columns(source: Source) -> list[Column]:
    rows = source.per_image
    return [c for c in source.columns.table("per_image") if c.direction != "neither" and c.name in rows.columns
            and pd.api.types.is_numeric_dtype(rows[c.name])]


def worst(source: Source, count: int, by: str = "mIoU", of: str | None = None) -> list[Section]:
    """A section per model (or for ``of`` alone): the ``count`` images where it does worst by ``by``.

    Worst is lowest, or highest for a figure declared lower-is-better (a
    distance); images where the figure is not defined (NaN) are not ranked.
    """
    if by not in per_image_metrics(source):
        raise UserError(f"no per-image figure {by!r}; these runs have: {', '.join(per_image_metrics(source))}",
                        field="by")
    if of is not None and of not in source.models:
        raise UserError(f"--of {of!r} is not among the models shown: {', '.join(source.models)}", field="of")
    _check_count(source, count, "--worst")
    return [_worst_section(source, model, count, by) for model in ([of] if of else source.models)]


def _worst_section(source: Source, model: str, count: int, by: str) -> Section:
    column = source.columns.get(by, "per_image")
    higher = column.direction == "higher"
    rows = source.per_image[source.per_image["model"] == model].dropna(subset=[by])
    rows = rows.sort_values(by, ascending=higher, kind="stable").head(count)
    chosen = [Row(r.image_id, f"{model}: {by} {format_value(column, getattr(r, by), 1)}")
              for r in rows.itertuples()]
    direction = "lowest" if higher else "highest"
    return Section(f"The {len(chosen)} images where {source.label(model)} does worst by {by} ({direction} first)",
                   f"worst-{_slug(model)}", chosen)


def disagree(source: Source, count: int) -> list[Section]:
    """The ``count`` images where the first two models' predictions differ on most labelled pixels."""
    if len(source.models) < 2:
        raise UserError(f"--disagree compares two models; only {', '.join(source.models)} has saved "
                        "predictions here (or give two with --model)", field="disagree")
    _check_count(source, count, "--disagree")
    first, second = source.models[:2]
    shares = {}
    for i, image_id in enumerate(source.dataset.ids()):
        labelled = _ignored(source, source.dataset.load(i).label) == 0
        differ = _prediction(source, first, image_id) != _prediction(source, second, image_id)
        shares[image_id] = float((differ & labelled).sum() / max(1, labelled.sum()))
    ranked = sorted(shares, key=lambda image_id: -shares[image_id])[:count]
    rows = [Row(i, f"{first} and {second} differ on {100 * shares[i]:.1f} % of the labelled pixels")
            for i in ranked]
    return [Section(f"The {len(rows)} images where {first} and {second} disagree most", "disagree", rows)]


def chosen(source: Source, image_ids: list[str]) -> list[Section]:
    known = set(source.dataset.ids())
    unknown = [i for i in image_ids if i not in known]
    if unknown:
        raise UserError(f"no image {', '.join(map(repr, unknown))} in dataset {source.dataset.info.name!r} "
                        f"(ids such as {source.dataset.ids()[0]!r})", field="images")
    return [Section(f"{len(image_ids)} chosen images", "chosen", [Row(i, "") for i in image_ids])]


def _check_count(source: Source, count: int, option: str) -> None:
    size = len(source.dataset)
    if not 1 <= count <= size:
        raise UserError(f"{option} {count}: dataset {source.dataset.info.name!r} has {size} images, "
                        f"choose 1 to {size}", field=option.lstrip("-"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


# ---------------------------------------------------------------- pictures

def _prediction(source: Source, model: str, image_id: str) -> np.ndarray:
    return read_label(prediction_path(source.predictions[model], image_id))


def _ignored(source: Source, label: np.ndarray) -> np.ndarray:
    """0 where the label is a class, 1 elsewhere (the ignore index, or an invalid value)."""
    return ((label < 0) | (label >= source.dataset.info.num_classes)).astype(np.uint8)


def colour_map(label: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    """Class indices coloured by ``colours``; any other value (ignore) grey."""
    k = len(colours)
    index = np.where((label >= 0) & (label < k), label, k)
    table = [*colours, IGNORED_GREY]
    if len(table) > 256:
        return Image.fromarray(np.asarray(table, dtype=np.uint8)[index])
    return _palette_image(index, table)


def error_map(prediction: np.ndarray, label: np.ndarray, ignored: np.ndarray) -> Image.Image:
    """White where the prediction is right, red where wrong, grey where the label is ignored."""
    codes = np.where(ignored == 1, 2, (prediction != label).astype(np.uint8))
    return _palette_image(codes, [CORRECT_WHITE, WRONG_RED, IGNORED_GREY])


def _palette_image(index: np.ndarray, table: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.fromarray(index.astype(np.uint8), mode="P")
    image.putpalette([channel for colour in table for channel in colour])
    return image


def thumbnail(image: Image.Image, box: tuple[int, int] = THUMB_BOX) -> Image.Image:
    """At most ``box``, never enlarged; label maps keep their exact colours (nearest neighbour)."""
    small = image.copy()
    small.thumbnail(box, Image.Resampling.NEAREST if image.mode == "P" else Image.Resampling.LANCZOS)
    return small


def data_uri(image: Image.Image) -> str:
    """JPEG for photographs, PNG for label and error maps."""
    buffer = io.BytesIO()
    if image.mode == "P":
        image.save(buffer, format="PNG", optimize=True)
        kind = "png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=PHOTO_QUALITY)
        kind = "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------- HTML

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.legend span { display: inline-block; margin: 0 0.9em 0.3em 0; font-size: 0.85em; }
.legend i { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #888;
            vertical-align: middle; margin-right: 0.3em; }
.row { margin: 1em 0 1.6em; }
.row h3 { font-size: 0.95em; margin: 0 0 0.3em; font-weight: normal; }
.row h3 b { font-family: monospace; font-size: 1.1em; }
.pictures { display: flex; gap: 0.8em; align-items: flex-start; overflow-x: auto; }
figure { margin: 0 0 0.4em; }
figure img { height: 128px; cursor: zoom-in; image-rendering: pixelated; border: 1px solid #ccc; display: block; }
figcaption { font-size: 0.78em; color: #444; width: 16em; margin-top: 0.2em; }
figcaption b { color: #111; }
.note { color: #555; }
#box { position: fixed; inset: 0; background: rgba(0, 0, 0, 0.85); display: flex; flex-direction: column;
       align-items: center; justify-content: center; cursor: zoom-out; }
#box[hidden] { display: none; }
#box img { max-width: 96vw; max-height: 90vh; min-height: 40vh; object-fit: contain;
           image-rendering: pixelated; background: #fff; }
#box p { color: #eee; font-size: 0.9em; }
"""

SCRIPT = """
document.addEventListener("click", function (event) {
  var box = document.getElementById("box");
  var picture = event.target.closest("img[data-full]");
  if (!picture) { if (event.target.closest("#box")) box.hidden = true; return; }
  box.querySelector("img").src = picture.dataset.full;
  box.querySelector("p").textContent = picture.alt + " (full size; click or Esc to close)";
  box.hidden = false;
});
document.addEventListener("keydown", function (event) {
  if (event.key === "Escape") document.getElementById("box").hidden = true;
});
"""


def render(source: Source, sections: list[Section], title: str, full_max: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> str:
    """The gallery as one HTML document with every picture embedded; enlarged ones at most ``full_max`` px.

    ``progress(done, total)`` is called after each row (rows of large images take a while).
    """
    total, done = sum(len(section.rows) for section in sections), 0
    info = source.dataset.info
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="note">Dataset {html.escape(info.name)}: {len(source.dataset)} images, '
            f"{info.num_classes} classes. Figures under a prediction are that image's own "
            "(percent; distances in pixels). Click a picture for its full size.</p>",
            *(f'<p class="note">{html.escape(note)}</p>'
              for note in [*source.notes, *([trained_legend(source.marks)] if source.marks else [])]),
            _legend(source)]
    if len(sections) > 1:
        body.append("<ul>" + "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>'
                                     for s in sections) + "</ul>")
    for section in sections:
        body.append(f'<h2 id="{section.anchor}">{html.escape(section.title)}</h2>')
        for row in section.rows:
            body.append(_row(source, row, full_max))
            done += 1
            if progress is not None:
                progress(done, total)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body)
            + '\n<div id="box" hidden><img alt=""><p></p></div>\n'
            f"<script>{SCRIPT}</script>\n</body>\n</html>\n")


def _legend(source: Source) -> str:
    info = source.dataset.info
    entries = [(colour, name) for colour, name in zip(info.colours(), info.class_names)]
    entries += [(IGNORED_GREY, "ignored"), (WRONG_RED, "wrong (error maps)"),
                (CORRECT_WHITE, "right (error maps)")]
    spans = "".join(f'<span><i style="background: rgb{tuple(colour)}"></i>{html.escape(name)}</span>'
                    for colour, name in entries)
    return f'<div class="legend">{spans}</div>'


def _row(source: Source, row: Row, full_max: int | None) -> str:
    sample = source.dataset.load(source.index(row.image_id))
    colours = source.dataset.info.colours()
    ignored = _ignored(source, sample.label)
    columns = [_figure(Image.fromarray(sample.image), f"{row.image_id}: image", "image", full_max)
               + _figure(colour_map(sample.label, colours), f"{row.image_id}: ground truth", "ground truth",
                         full_max)]
    for model in source.models:
        prediction = _prediction(source, model, row.image_id)
        if prediction.shape != sample.label.shape:
            raise UserError(f"the saved prediction of {model} for {row.image_id!r} is "
                            f"{prediction.shape[0]}x{prediction.shape[1]} but the label is "
                            f"{sample.label.shape[0]}x{sample.label.shape[1]}: has the dataset changed?",
                            source=str(prediction_path(source.predictions[model], row.image_id)))
        wrong = (prediction != sample.label) & (ignored == 0)
        share = wrong.sum() / max(1, (ignored == 0).sum())
        columns.append(_figure(colour_map(prediction, colours), f"{row.image_id}: {model}",
                               f"<b>{html.escape(source.label(model))}</b> "
                               + _figures(source, model, row.image_id),
                               full_max, escape=False)
                       + _figure(error_map(prediction, sample.label, ignored), f"{row.image_id}: {model} errors",
                                 f"errors: {100 * share:.1f} % of labelled pixels wrong", full_max))
    note = f" — {html.escape(row.note)}" if row.note else ""
    stacks = "".join(f'<div class="stack">{column}</div>' for column in columns)
    return (f'<div class="row"><h3><b>{html.escape(row.image_id)}</b>{note}</h3>'
            f'<div class="pictures">{stacks}</div></div>')


def _figures(source: Source, model: str, image_id: str) -> str:
    rows = source.per_image[(source.per_image["model"] == model) & (source.per_image["image_id"] == image_id)]
    if rows.empty:
        return "(no figures)"
    record = rows.iloc[0]
    shown = [c for c in _caption_columns(source) if pd.notna(record[c.name])]
    return html.escape(" · ".join(f"{c.name} {format_value(c, record[c.name], 1)}" for c in shown))


def _caption_columns(source: Source) -> list[Column]:
    """The per-image figures under a prediction: those whose dataset figure leaderboards show."""
    shown = {c.name for c in source.columns.table("summary") if c.leaderboard}
    return [c for c in _per_image_columns(source) if c.name in shown]


def _figure(image: Image.Image, alt: str, caption: str, full_max: int | None, escape: bool = True) -> str:
    text = html.escape(caption) if escape else caption
    full = image if full_max is None else thumbnail(image, (full_max, full_max))
    return (f'<figure><img src="{data_uri(thumbnail(image))}" data-full="{data_uri(full)}" '
            f'alt="{html.escape(alt)}"><figcaption>{text}</figcaption></figure>')


def gallery(results: RunResults, *, dataset: str | None = None, models: list[str] | None = None,
            worst_count: int | None = None, by: str = "mIoU", of: str | None = None,
            disagree_count: int | None = None, image_ids: list[str] | None = None,
            full_max: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> tuple[str, list[str]]:
    """The gallery's HTML and its notes; by default the 10 worst images of each model by mIoU.

    At most one of ``worst_count``, ``disagree_count`` and ``image_ids``;
    ``full_max`` bounds the longer side of the enlarged pictures (None: full size).
    """
    if sum(x is not None for x in (worst_count, disagree_count, image_ids)) > 1:
        raise UserError("choose the images one way: --worst, --disagree or --images")
    source = open_source(results, dataset, models)
    if disagree_count is not None:
        sections = disagree(source, disagree_count)
    elif image_ids:
        sections = chosen(source, image_ids)
    else:
        count = worst_count if worst_count is not None else min(10, len(source.dataset))
        sections = worst(source, count, by, of)
    name = results.manifest.get("suite_name", "segbench")
    title = f"segbench gallery: {name}, {source.dataset.info.name}"
    return render(source, sections, title, full_max, progress), source.notes


def worst_galleries(results: RunResults, report: Path, count: int = 10,
                    by: str = "mIoU") -> tuple[dict[Path, bytes], dict[str, str], list[str]]:
    """Beside an HTML report, a gallery per dataset with saved predictions: each model's worst images.

    Returns the galleries (path -> HTML, for the caller to write once the
    report has rendered), the links for the report (text -> href relative to
    the report) and notes on what could not be drawn.
    """
    files, links, notes = {}, {}, []
    datasets = dict.fromkeys(dataset for _, dataset in _saved_predictions(_complete_cells(results)))
    for dataset in datasets:
        path = report.with_name(f"{report.stem}-gallery-{_slug(dataset)}.html")
        try:
            source = open_source(results, dataset)
            sections = worst(source, min(count, len(source.dataset)), by)
        except UserError as error:
            notes.append(f"no gallery for dataset {dataset!r}: {error}")
            continue
        title = f"segbench gallery: {results.manifest.get('suite_name', 'segbench')}, {dataset}"
        files[path] = render(source, sections, title).encode("utf-8")
        links |= {f"{dataset}: {section.title}": f"{path.name}#{section.anchor}" for section in sections}
        notes += source.notes
    return files, links, notes
