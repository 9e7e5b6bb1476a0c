"""Pictures and the self-contained HTML report of a training run.

Figures are drawn on `matplotlib.figure.Figure` with an explicit Agg canvas rather than pyplot,
so nothing here touches pyplot's global figure registry or the process-wide backend choice.
"""

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ict_trainer.evaluation import classification_summary, worst_predictions

__all__ = [
    "classification_summary",
    "image_grid",
    "plot_confusion_matrix",
    "plot_training_curves",
    "thumbnail",
    "worst_predictions",
    "write_html_report",
]


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return path


# ----------------------------------------------------------------------------- curves


def plot_training_curves(
    history: Mapping[str, Sequence[float]],
    path: Path,
    stage_starts: Sequence[tuple[str, int]] = (),
) -> Path:
    """Loss and accuracy per epoch (train and `val_` series) side by side, written as a PNG.

    `history` is the concatenation of every stage's Keras history. Each `(name, start)` in
    `stage_starts` marks where a stage begins: `start` is the 0-based index of its first epoch in
    the concatenated series, i.e. the `initial_epoch` that stage was fitted with.
    """
    figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    panels = [("loss", "Loss", ("loss",)), ("accuracy", "Accuracy", ("accuracy", "acc"))]
    for position, (_, title, keys) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, position)
        plotted = []
        for prefix, label, style in (("", "train", "-o"), ("val_", "validation", "-s")):
            key = next((prefix + k for k in keys if prefix + k in history), None)
            values = np.asarray(history.get(key, []) if key else [], dtype=np.float64)
            if values.size:
                epochs = np.arange(1, values.size + 1)
                axes.plot(epochs, values, style, markersize=3, linewidth=1.5, label=label)
                plotted.append(values)
        finite = np.concatenate(plotted) if plotted else np.empty(0)
        finite = finite[np.isfinite(finite)]
        if title == "Accuracy" and finite.size and finite.min() >= 0 and finite.max() <= 1:
            axes.set_ylim(-0.02, 1.02)
        if not plotted:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        for name, start in stage_starts:
            # Between the last epoch of the previous stage and the first of this one.
            x = int(start) + 0.5
            axes.axvline(x, color="0.35", linestyle="--", linewidth=1)
            axes.text(
                x,
                0.98,
                f" {name}",
                transform=axes.get_xaxis_transform(),
                ha="left",
                va="top",
                fontsize=9,
                color="0.25",
            )
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if plotted:
            axes.legend(loc="best", fontsize=9)
    return _save(figure, path)


# ------------------------------------------------------------------- confusion matrix


def _short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_confusion_matrix(matrix, class_names: Sequence[str], path: Path) -> Path:
    """Heatmap (rows = true class, columns = predicted) with the count in each cell, as a PNG.

    Colour is the fraction of the true class's samples, so small classes stay readable next to
    large ones; the number printed is the raw count.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {k} class names")
    rows = counts.sum(axis=1, keepdims=True)
    fraction = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)

    side = min(16.0, max(5.0, 2.5 + 0.42 * k))
    cell_points = (side - 2.5) / k * 72
    digits = len(str(int(counts.max()))) if counts.size else 1
    count_size = max(4.5, min(14.0, cell_points * 0.55, cell_points * 1.4 / digits))
    tick_size = max(5.0, min(11.0, cell_points * 0.6))

    figure = Figure(figsize=(side, side), dpi=100, layout="constrained")
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.03)
    colorbar.set_label("fraction of the true class")
    for i in range(k):
        for j in range(k):
            axes.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=count_size,
                color="white" if fraction[i, j] > 0.5 else "black",
            )
    labels = [_short(str(name)) for name in class_names]
    axes.set_xticks(range(k), labels, fontsize=tick_size, rotation=45 if k <= 8 else 90)
    if k <= 8:
        for label in axes.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    axes.set_yticks(range(k), labels, fontsize=tick_size)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Validation confusion matrix")
    return _save(figure, path)


# --------------------------------------------------------------------- images


def _to_pil(image: np.ndarray) -> Image.Image:
    """RGB Pillow image from an HxW, HxWx1, HxWx3 or HxWx4 array.

    Float arrays whose values all lie in [0, 1] are taken as rescaled pixels (the blog's
    `rescale=1/255`); other floats as 0..255.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if values.size and np.nanmax(values) <= 1.0 and np.nanmin(values) >= 0.0:
            values = values * 255.0
        array = np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def _open(image: np.ndarray | Path | str) -> Image.Image:
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            # Phone pictures are stored sideways with an EXIF rotation; show them upright.
            return ImageOps.exif_transpose(opened).convert("RGB")
    return _to_pil(image)


def thumbnail(image: np.ndarray | Path, size: int = 128) -> bytes:
    """JPEG bytes of the image shrunk (never enlarged) to fit a size x size square."""
    picture = _open(image)
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


_CAPTION_HEIGHT = 20


def image_grid(
    images: Sequence[np.ndarray],
    path: Path,
    columns: int,
    captions: Sequence[str] | None = None,
    cell: int = 160,
) -> Path:
    """A PNG grid, `columns` images per row, each fitted into a `cell` x `cell` square.

    The PNG is `columns * cell` wide and `rows * cell` high, plus a 20-pixel caption strip
    under every row when `captions` (one per image) is given.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if columns < 1:
        raise ValueError("columns must be at least 1")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    rows = math.ceil(len(images) / columns)
    strip = _CAPTION_HEIGHT if captions is not None else 0
    grid = Image.new("RGB", (columns * cell, rows * (cell + strip)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    padding = 2 if cell > 8 else 0
    for n, array in enumerate(images):
        left, top = (n % columns) * cell, (n // columns) * (cell + strip)
        picture = ImageOps.contain(_to_pil(array), (cell - 2 * padding, cell - 2 * padding))
        grid.paste(
            picture, (left + (cell - picture.width) // 2, top + (cell - picture.height) // 2)
        )
        if captions is not None:
            text = body = str(captions[n])
            while body and draw.textlength(text, font=font) > cell - 4:
                body = body[:-1]
                text = body + "…"
            draw.text((left + 2, top + cell + 3), text, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, format="PNG")
    return path


# ----------------------------------------------------------------------- HTML


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _percent(value) -> str:
    number = _number(value)
    return "—" if number is None else f"{number * 100:.1f} %"


def _decimal(value, places: int = 4) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.{places}f}"


def _duration(value) -> str:
    seconds = _number(value)
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _sniff(data: bytes) -> tuple[str, bytes]:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", data
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg", data
    # Anything else Pillow can read is re-encoded so every browser shows it.
    with Image.open(io.BytesIO(data)) as opened:
        buffer = io.BytesIO()
        opened.convert("RGB").save(buffer, format="PNG")
    return "image/png", buffer.getvalue()


def _data_uri(data: bytes) -> str:
    mime, payload = _sniff(data)
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """`header` and `rows` cells must already be escaped."""
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i >= numeric_from else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1100px;padding:1.5rem;color:#1d2430;background:#fafbfc}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #d8dde3;padding-bottom:.3rem}
.sub{color:#5b6675;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:.7rem 1rem;min-width:10rem}
.card .v{font-size:1.6rem;font-weight:600}.card .l{color:#5b6675;font-size:.85rem}
table{border-collapse:collapse;background:#fff;margin:.5rem 0}
th,td{border:1px solid #d8dde3;padding:.3rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#eef1f4}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #d8dde3;background:#fff}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.8rem}
.gallery figure{margin:0;background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:.4rem}
.gallery img{display:block;margin:0 auto;max-width:100%;border:0}
.gallery figcaption{font-size:.8rem;word-break:break-word}
.wrong{color:#b3261e}.muted{color:#5b6675}
"""


def _headline(metrics: Mapping) -> str:
    """Saved, last and best epochs side by side, each labelled with its epoch."""
    final = metrics.get("final") or {}
    best = metrics.get("best") or {}
    saved = metrics.get("saved") or final

    def label(what: str, record: Mapping, metric: str) -> str:
        epoch = record.get("epoch")
        return f"{what} {metric}" + (f" (epoch {epoch})" if epoch is not None else "")

    best_by = f"best by {best['monitor']}" if best.get("monitor") else "best"
    cards = [
        (label("saved model's val", saved, "accuracy"), _percent(saved.get("val_accuracy"))),
        (label("saved model's val", saved, "loss"), _decimal(saved.get("val_loss"))),
        (label("last epoch's val", final, "accuracy"), _percent(final.get("val_accuracy"))),
        (label(best_by + ": val", best, "accuracy"), _percent(best.get("val_accuracy"))),
        (label("last epoch's train", final, "accuracy"), _percent(final.get("accuracy"))),
        (label("last epoch's train", final, "loss"), _decimal(final.get("loss"))),
    ]
    body = "".join(
        f'<div class="card"><div class="v">{value}</div><div class="l">{_e(label)}</div></div>'
        for label, value in cards
    )
    return f'<div class="cards">{body}</div>'


def _per_class(metrics: Mapping) -> str:
    evaluation = metrics.get("evaluation") or {}
    per_class = evaluation.get("perClass") or {}
    if not per_class:
        return '<p class="muted">No validation evaluation was recorded.</p>'
    order = [n for n in metrics.get("classNames") or [] if n in per_class]
    order += [n for n in per_class if n not in order]
    rows = [
        [
            _e(name),
            _decimal(per_class[name].get("precision"), 3),
            _decimal(per_class[name].get("recall"), 3),
            _decimal(per_class[name].get("f1"), 3),
            _e(per_class[name].get("support", "—")),
        ]
        for name in order
    ]
    summary = (
        f"<p>Accuracy {_percent(evaluation.get('accuracy'))}, "
        f"macro F1 {_decimal(evaluation.get('macroF1'), 3)}.</p>"
    )
    return summary + _table(["class", "precision", "recall", "F1", "support"], rows)


def _counts(metrics: Mapping) -> str:
    counts = metrics.get("counts") or {}
    if not counts:
        return '<p class="muted">No dataset counts were recorded.</p>'
    splits = [s for s in ("train", "validation") if s in counts]
    splits += [s for s in counts if s not in splits]
    classes = list(metrics.get("classNames") or [])
    for split in splits:
        classes += [c for c in counts[split] or {} if c not in classes]
    rows = [[_e(c)] + [_e((counts[s] or {}).get(c, 0)) for s in splits] for c in classes]
    totals = [sum(_number(v) or 0 for v in (counts[s] or {}).values()) for s in splits]
    rows.append(["<strong>total</strong>"] + [f"<strong>{t:g}</strong>" for t in totals])
    return _table(["class"] + [_e(s) for s in splits], rows)


def _details(metrics: Mapping) -> str:
    durations = metrics.get("durations") or {}
    known = ["total", "features", "head", "finetune", "train"]
    order = [k for k in known if k in durations] + [k for k in durations if k not in known]
    duration_table = _table(["stage", "time"], [[_e(k), _duration(durations[k])] for k in order])
    cache = metrics.get("cacheHit")
    cache_text = {True: "hit (features reused)", False: "miss (features computed)"}.get(
        cache, "not used"
    )
    run_rows = [
        ["feature cache", _e(cache_text)],
        ["image size", _e(metrics.get("imageSize", "—"))],
        ["seed", _e(metrics.get("seed", "—"))],
    ]
    run_rows += [[_e(k), _e(v)] for k, v in (metrics.get("versions") or {}).items()]
    if not durations:
        duration_table = '<p class="muted">No durations were recorded.</p>'
    return duration_table + _table(["setting", "value"], run_rows, numeric_from=2)


def _gallery(worst: Sequence[Mapping]) -> str:
    if not worst:
        return '<p class="muted">No misclassified validation images.</p>'
    items = []
    for entry in worst:
        picture = entry.get("thumbnail")
        if isinstance(picture, (str, Path)):
            picture = thumbnail(Path(picture))
        image = (
            f'<img src="{_data_uri(bytes(picture))}" alt="">'
            if picture
            else '<p class="muted">no picture</p>'
        )
        lines = [
            f"true: <strong>{_e(entry.get('trueClass', entry.get('trueIndex', '?')))}</strong>"
            f" ({_percent(entry.get('trueProbability'))})",
            f'predicted: <span class="wrong">'
            f"{_e(entry.get('predictedClass', entry.get('predictedIndex', '?')))}</span>"
            + (
                f" ({_percent(entry['predictedProbability'])})"
                if "predictedProbability" in entry
                else ""
            ),
        ]
        name = entry.get("file") or entry.get("path")
        if name:
            lines.append(f'<span class="muted">{_e(name)}</span>')
        items.append(f"<figure>{image}<figcaption>{'<br>'.join(lines)}</figcaption></figure>")
    return f'<div class="gallery">{"".join(items)}</div>'


def write_html_report(
    path: Path,
    metrics: Mapping,
    pictures: Mapping[str, Path],
    worst: Sequence[Mapping],
) -> Path:
    """Write one self-contained HTML page (inline CSS, images as data URIs, no scripts).

    `pictures` maps a caption to an image file (e.g. the curves and confusion-matrix PNGs).
    Each `worst` entry carries `thumbnail` (PNG/JPEG bytes or an image Path), `trueClass`,
    `predictedClass`, `trueProbability`, and optionally `predictedProbability` and `file`.
    Missing metrics show as a dash rather than failing the run at its very end.
    """
    name = metrics.get("name") or "training run"
    strategy = metrics.get("strategy") or "unknown strategy"
    backbone = metrics.get("backbone") or "own convnet"
    figures = []
    for caption, picture_path in pictures.items():
        picture_path = Path(picture_path)
        if picture_path.is_file():
            uri = _data_uri(picture_path.read_bytes())
            figures.append(
                f'<figure><img src="{uri}" alt="{_e(caption)}">'
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
        else:
            figures.append(f'<p class="muted">Picture {_e(caption)} was not produced.</p>')
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ict report: {_e(name)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(name)}</h1>
<p class="sub">strategy <strong>{_e(strategy)}</strong> · backbone <strong>{_e(backbone)}</strong>
· {_e(len(metrics.get("classNames") or []))} classes</p>
{_headline(metrics)}
<h2>Training</h2>
{"".join(figures) or '<p class="muted">No pictures.</p>'}
<h2>Per-class validation scores</h2>
{_per_class(metrics)}
<h2>Dataset</h2>
{_counts(metrics)}
<h2>Run</h2>
{_details(metrics)}
<h2>Worst-classified validation images</h2>
{_gallery(worst)}
</body>
</html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
