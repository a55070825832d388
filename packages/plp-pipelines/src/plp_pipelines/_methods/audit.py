"""``audit``: likely label and identity errors, leakage and outliers, from the run's embeddings.

The lists come from :func:`plp_eval.audit` over every split the run embeds, each ranked by its
stated score; ``audit.json`` holds them (images named by file path where the dataset has
files, else by split and index), ``plots/audit.png`` shows the most suspect with thumbnails,
and ``plots/audit.html`` is the report.html section.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from plp_pipelines._methods import METHODS, EvaluationContext, EvaluationMethod
from plp_pipelines._runs import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from plp_pipelines._protocols import SplitDataModule

__all__ = ["AUDIT_FILE", "Audit", "audit_layout"]

AUDIT_FILE = "audit.json"
"""Where the lists go, beside ``metrics.json``."""

ENTRIES = 50  # each list's length in audit.json
SHOWN = 8  # most suspect entries per list with thumbnails in audit.png
SHOWN_HTML = 20  # ... in report.html
THUMBNAIL_SIDE = 48
LISTS = ("mislabeled", "duplicate_identities", "leakage", "outliers")
TITLES = {
    "mislabeled": "likely mislabelled images",
    "duplicate_identities": "likely duplicate identities",
    "leakage": "near-duplicates across splits (leakage)",
    "outliers": "outliers",
}


@runtime_checkable
class FileDataModule(Protocol):
    """A datamodule whose images are files: ``split_paths`` names them (plp-data's do)."""

    def split_paths(self, split: str) -> list[str] | None:
        """Return the image files of ``split`` in item order, or None without files."""
        ...


def audit_layout(
    protocol: str,
) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """Return the splits audited, their label spaces and the split pairs checked for leakage.

    ``trainval_test``: trainval and test share their classes. ``test_leave_one_out``: the test
    classes are others (benchmarks like CUB); near-duplicates within test are its
    query/gallery leakage. ``query_gallery``: test is the query split again, training
    identities are others; leakage between every pair of trainval, query and gallery.

    >>> audit_layout("trainval_test")
    (['trainval', 'test'], [['trainval', 'test']], [('trainval', 'test')])
    """
    if protocol == "query_gallery":
        return (
            ["trainval", "query", "gallery"],
            [["trainval"], ["query", "gallery"]],
            [("trainval", "query"), ("trainval", "gallery"), ("query", "gallery")],
        )
    if protocol == "test_leave_one_out":
        return (
            ["trainval", "test"],
            [["trainval"], ["test"]],
            [("trainval", "test"), ("test", "test")],
        )
    return ["trainval", "test"], [["trainval", "test"]], [("trainval", "test")]


@METHODS.register("audit", order=40, default=False)
class Audit(EvaluationMethod):
    """Likely mislabelled images, duplicate identities, leakage and outliers (``audit.json``).

    From the embeddings of every split the run embeds (training labels are audited too): each
    list is ranked by the score it states (``audit.json``: ``scores``), most suspect first,
    under the run's ``[evaluate] reid_metric``. Leakage compares pixels (a hash of each image as the
    model sees it) and embeddings (closer than a tenth of the median nearest-image distance).
    """

    plots = ("audit", "audit_lists", "audit_html")

    def __init__(self) -> None:
        self._lists: dict[str, Any] = {}

    def compute(self, context: EvaluationContext) -> dict[str, dict[str, Any]]:
        """Return ``{"audit": settings and totals}``; the lists are kept for :meth:`draw`."""
        import plp_eval

        splits, groups, pairs = audit_layout(context.config.evaluate.protocol)
        inputs = {}
        for split in splits:
            features = context.features[split]
            inputs[split] = plp_eval.AuditSplit(
                features.features,
                features.labels,
                features.cameras,
                hashes=_pixel_hashes(context.datamodule, split),
                groups=features.groups,  # a dataset CSV's sequences: the protocol's junk
            )
        result = plp_eval.audit(
            inputs,
            label_groups=groups,
            leakage_pairs=pairs,
            metric=context.config.evaluate.reid_metric,
            max_entries=ENTRIES,
        )
        self._lists = _named(result.to_dict(), context.datamodule, splits)
        summary = {key: self._lists[key] for key in ("metric", "neighbours", "totals")}
        return {
            "audit": {
                **summary,
                "leakage_thresholds": self._lists["leakage_thresholds"],
                "splits": splits,
                "file": AUDIT_FILE,
            }
        }

    def draw(self, context: EvaluationContext, plot_path: Callable[[str], Path]) -> dict[str, Path]:
        """Write ``audit.json``, ``plots/audit.png`` (thumbnails) and ``plots/audit.html``."""
        import plp_viz

        lists_path = plot_path("audit.png").parent.parent / AUDIT_FILE  # beside metrics.json
        atomic_write_json(lists_path, self._lists)
        images = _ImageSource(context.datamodule)
        names = context.data.class_names
        rows = [
            plp_viz.ImageRow(TITLES[name], *_row(name, self._lists[name][:SHOWN], images, names))
            for name in LISTS
        ]
        page = plot_path("audit.html")
        atomic_write_text(page, _html_section(self._lists, images, names))
        return {
            "audit": plp_viz.plot_image_rows(rows, plot_path("audit.png")),
            "audit_lists": lists_path,
            "audit_html": page,
        }

    def report(self, metrics: Mapping[str, Any]) -> list[str]:
        """Return the report section: what was audited, how many suspects, where the lists are."""
        section = metrics.get("audit", {})
        totals = section.get("totals", {})
        lines = [
            "## Audit",
            "",
            f"Splits {', '.join(section.get('splits', []))}, {section.get('metric')} "
            f"distances, {section.get('neighbours')} neighbours; every list is ranked by its "
            f"stated score, most suspect first: [{AUDIT_FILE}]({AUDIT_FILE}).",
            "",
            "| list | found |",
            "| --- | --- |",
            *(f"| {TITLES[name]} | {totals.get(name, 0)} |" for name in LISTS),
            "",
        ]
        if "audit" in metrics.get("plots", {}):
            lines += [f"![audit: the most suspect entries]({metrics['plots']['audit']})", ""]
        return lines


def _pixel_hashes(datamodule: SplitDataModule, split: str) -> list[str]:
    """Return the pixel hash of every image of ``split`` as the model sees it (one pass)."""
    import plp_eval

    hashes: list[str] = []
    for batch in datamodule.split_dataloader(split):
        hashes += [plp_eval.pixel_hash(image) for image in batch[0].cpu().numpy()]
    return hashes


def _named(lists: dict[str, Any], datamodule: object, splits: Sequence[str]) -> dict[str, Any]:
    """Add each image's file path (where the dataset has files) to the lists' image entries."""
    paths: dict[str, list[str] | None] = {split: None for split in splits}
    if isinstance(datamodule, FileDataModule):
        paths = {split: datamodule.split_paths(split) for split in splits}

    def name(image: dict[str, Any]) -> dict[str, Any]:
        files = paths.get(image["split"])
        return {**image, "path": files[image["index"]]} if files is not None else image

    named = dict(lists)
    named["mislabeled"] = [name(entry) for entry in lists["mislabeled"]]
    named["outliers"] = [name(entry) for entry in lists["outliers"]]
    named["leakage"] = [
        {**entry, "first": name(entry["first"]), "second": name(entry["second"])}
        for entry in lists["leakage"]
    ]
    named["duplicate_identities"] = [
        {**entry, "examples": [[name(image) for image in side] for side in entry["examples"]]}
        for entry in lists["duplicate_identities"]
    ]
    return named


class _ImageSource:
    """The images of the splits, loaded one by one as entries show them."""

    def __init__(self, datamodule: SplitDataModule) -> None:
        self.datamodule = datamodule
        self.datasets: dict[str, Any] = {}

    def __call__(self, image: Mapping[str, Any]) -> Any:
        split = image["split"]
        if split not in self.datasets:
            self.datasets[split] = self.datamodule.split_dataloader(split).dataset
        return self.datasets[split][int(image["index"])][0]


def image_name(image: Mapping[str, Any]) -> str:
    """Return how a list names an image: its file path, else ``split[index]``."""
    return str(image.get("path") or f"{image['split']}[{image['index']}]")


def label_name(label: int, names: list[str] | None) -> str:
    """Return a class's name when the dataset has one, else its label."""
    return names[label] if names is not None and 0 <= label < len(names) else str(label)


def _row(
    name: str, entries: list[dict[str, Any]], images: _ImageSource, names: list[str] | None
) -> tuple[list[Any], list[str]]:
    """Return the thumbnails and captions of a list's first entries."""
    shown: list[Any] = []
    captions: list[str] = []
    for entry in entries:
        score = f"{entry['score']:.2f}"
        if name == "mislabeled":
            shown.append(images(entry))
            captions.append(
                f"{label_name(entry['label'], names)}→{label_name(entry['suggested_label'], names)}"
                f" {score}"
            )
        elif name == "outliers":
            shown.append(images(entry))
            captions.append(f"{label_name(entry['label'], names)} {score}")
        elif name == "leakage":
            shown += [images(entry["first"]), images(entry["second"])]
            same = "same pixels" if entry["identical_pixels"] else f"d {score}"
            captions += [entry["first"]["split"], f"{entry['second']['split']}, {same}"]
        else:
            first, second = (side[0] for side in entry["examples"])
            shown += [images(first), images(second)]
            a, b = (label_name(label, names) for label in entry["labels"])
            captions += [a, f"{b} {score}"]
    return shown, captions


def _html_section(lists: dict[str, Any], images: _ImageSource, names: list[str] | None) -> str:
    """Return the report.html section: a table per list, thumbnails and scores."""
    import plp_viz

    def thumb(image: Mapping[str, Any]) -> str:
        uri = plp_viz.image_uri(images(image), max_side=THUMBNAIL_SIDE)
        title = html.escape(image_name(image))
        return f'<img class="thumb" src="{uri}" title="{title}" alt="{title}">'

    def cell(image: Mapping[str, Any]) -> str:
        return f"{thumb(image)}<br><code>{html.escape(image_name(image))}</code>"

    def label(value: int) -> str:
        return html.escape(label_name(value, names))

    tables = {
        "mislabeled": (
            ["image", "label", "looks like", "score", "neighbours agreeing"],
            lambda e: [
                cell(e),
                label(e["label"]),
                label(e["suggested_label"]),
                f"{e['score']:.3f}",
                f"{e['neighbour_agreement']:.0%}",
            ],
        ),
        "duplicate_identities": (
            ["first", "second", "score", "gap / spreads", "cameras"],
            lambda e: [
                label(e["labels"][0]) + "<br>" + "".join(thumb(i) for i in e["examples"][0]),
                label(e["labels"][1]) + "<br>" + "".join(thumb(i) for i in e["examples"][1]),
                f"{e['score']:.3f}",
                f"{e['gap']:.3g} / {e['spreads'][0]:.3g}, {e['spreads'][1]:.3g}",
                "" if e["cameras"] is None else f"{e['cameras'][0]} / {e['cameras'][1]}",
            ],
        ),
        "leakage": (
            ["first", "second", "identical pixels", "distance"],
            lambda e: [
                cell(e["first"]),
                cell(e["second"]),
                "yes" if e["identical_pixels"] else "no",
                f"{e['score']:.3g}",
            ],
        ),
        "outliers": (
            ["image", "label", "nearest class", "score"],
            lambda e: [
                cell(e),
                label(e["label"]),
                label(e["nearest_label"]),
                f"{e['score']:.3f}",
            ],
        ),
    }
    parts = ['<section id="audit"><h2>Audit</h2>']
    for name in LISTS:
        header, cells = tables[name]
        entries = lists[name][:SHOWN_HTML]
        parts.append(
            f"<h3>{html.escape(TITLES[name])} ({lists['totals'][name]} found)</h3>"
            f"<p><small>score: {html.escape(lists['scores'][name])}</small></p>"
        )
        if not entries:
            parts.append("<p>none</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{c}</td>" for c in cells(e)) + "</tr>" for e in entries]
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)
