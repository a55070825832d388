"""Self-contained HTML in a real browser: headless Chromium (Debian's) driven by Selenium.

Checked: no console errors, no request leaves ``file://`` (images are data URIs, scripts
inlined), the interactive embedding has one point per image, hovering a point shows its
thumbnail, clicking it opens its rank list. Skipped, with the reason, where Chromium and its
driver are not installed (``.ci/run`` installs them: ``apt-get install chromium
chromium-driver``).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Flags that work on machines without a display, a GPU, a sandbox or a network.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
# Schemes a self-contained page may load from (data: images, the file itself).
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")

# Screen position (viewport pixels), thumbnail and link of point i of the embedding.
LOCATE_POINT = """
const points = Bokeh.documents[0].get_model_by_name(arguments[0]);
const view = Bokeh.index.find_one(points);
view.parent.canvas_view.el.scrollIntoView({block: 'center'});
const canvas = view.parent.canvas_view.el.getBoundingClientRect();
const data = points.data_source.data;
const i = arguments[1];
return [canvas.left + view.coordinates.x_scale.compute(data.x[i]),
        canvas.top + view.coordinates.y_scale.compute(data.y[i]),
        data.thumb[i], data.link[i]];
"""
# Screen coordinates of every point (canvas pixels), to pick one that no other point covers.
ALL_POINTS = """
const points = Bokeh.documents[0].get_model_by_name(arguments[0]);
const view = Bokeh.index.find_one(points);
const data = points.data_source.data;
return Array.from(data.x, (x, i) => [view.coordinates.x_scale.compute(x),
                                     view.coordinates.y_scale.compute(data.y[i])]);
"""
# The sources of every image drawn on screen, shadow DOMs (Bokeh's tooltips) included.
SHOWN_IMAGES = """
const found = [];
const walk = (root) => {
  for (const element of root.querySelectorAll('*')) {
    if (element.shadowRoot) walk(element.shadowRoot);
    if (element.tagName === 'IMG') {
      const box = element.getBoundingClientRect();
      if (box.width > 0 && box.height > 0) found.push(element.src);
    }
  }
};
walk(document);
return found;
"""
BOKEH_READY = """
return typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0
  && Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(arguments[0])) != null;
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium with console and network logs, or a skip saying what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip(
            "headless Chromium is not installed: apt-get install chromium chromium-driver "
            "(.ci/run installs them where it runs as root)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: Any, path: Path, figure: str | None = None) -> None:
    """Load ``path`` from file:// with fresh logs; wait for Bokeh to draw ``figure``."""
    browser.get("about:blank")
    browser.get_log("browser")
    browser.get_log("performance")
    browser.get(path.resolve().as_uri())
    deadline = time.monotonic() + 30
    while figure is not None and not browser.execute_script(BOKEH_READY, figure):
        assert time.monotonic() < deadline, "Bokeh did not draw the figure within 30 s"
        time.sleep(0.1)


def console_errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def requests_leaving_file(browser: Any) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert urls, "the network log recorded nothing: the check would pass vacuously"
    return [url for url in urls if not url.startswith(LOCAL_SCHEMES)]


def hover(browser: Any, figure: str, index: int) -> tuple[list[str], str, str]:
    """Move the mouse onto point ``index``; return the images then shown, its thumb and link."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    x, y, thumb, link = browser.execute_script(LOCATE_POINT, figure, index)
    actions = ActionBuilder(browser)
    actions.pointer_action.move_to_location(round(x), round(y))
    actions.perform()
    deadline = time.monotonic() + 5
    shown = browser.execute_script(SHOWN_IMAGES)
    while thumb not in shown and time.monotonic() < deadline:
        time.sleep(0.1)
        shown = browser.execute_script(SHOWN_IMAGES)
    return shown, thumb, link


def isolated_point(browser: Any, figure: str) -> int:
    """Return the point farthest from its nearest neighbour on screen (hovered, clicked alone)."""
    screen = np.asarray(browser.execute_script(ALL_POINTS, figure), dtype=np.float64)
    gaps = np.linalg.norm(screen[:, None] - screen[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    return int(gaps.min(axis=1).argmax())


def click_here(browser: Any) -> None:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(browser)
    actions.pointer_action.click()
    actions.perform()


def test_interactive_embedding_page(browser: Any, tmp_path: Path) -> None:
    import plp_viz
    from plp_viz._html import EMBEDDING_NAME

    rng = np.random.default_rng(0)
    count = 40
    labels = rng.integers(0, 3, count)
    thumbs = [plp_viz.image_uri(rng.random((8, 8))) for _ in range(count)]
    anchors = [f"query-{i}" for i in range(count)]
    figure = plp_viz.interactive_embedding(
        rng.normal(size=(count, 2)), labels, thumbs, links=[f"#{a}" for a in anchors]
    )
    lists = plp_viz.html_rank_lists(
        anchors,
        thumbs,
        labels.tolist(),
        [[t] for t in thumbs[1:] + thumbs[:1]],
        [[int(label)] for label in np.roll(labels, -1)],
    )
    path = tmp_path / "page.html"
    path.write_text(plp_viz.html_page("embedding", ["<h1>embedding</h1>", figure, lists]))

    open_page(browser, path, EMBEDDING_NAME)
    drawn = browser.execute_script(
        "return Bokeh.documents[0].get_model_by_name(arguments[0]).data_source.data.x.length",
        EMBEDDING_NAME,
    )
    assert drawn == count
    assert not [src for src in browser.execute_script(SHOWN_IMAGES) if src in thumbs]
    point = isolated_point(browser, EMBEDDING_NAME)
    shown, thumb, link = hover(browser, EMBEDDING_NAME, point)
    assert thumb in shown  # the tooltip shows the point's thumbnail
    click_here(browser)
    assert browser.current_url.endswith(link)
    display = "return getComputedStyle(document.getElementById(arguments[0])).display"
    assert browser.execute_script(display, anchors[point]) == "block"
    assert browser.execute_script(display, anchors[point - 1]) == "none"
    assert console_errors(browser) == []
    assert requests_leaving_file(browser) == []


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory, shared_runs: Path) -> Path:
    """A one-epoch digits run evaluated with every method and the audit, its pairs explained."""
    from plp_pipelines import evaluate, explain_pairs
    from plp_pipelines.testing import shared_run

    root = Path(__file__).resolve().parents[1]
    runs = tmp_path_factory.mktemp("runs")
    run = shared_run(
        shared_runs,
        root / "configs" / "digits.toml",
        ["trainer.epochs=1", "evaluate.after_training=false"],
        runs,
    )
    evaluate(run, methods=["accuracy", "reid", "clustering", "audit"], runs_root=runs, umap=True)
    explain_pairs(run, queries=2, runs_root=runs)
    return run


@pytest.mark.slow
def test_audit_and_pairs_of_a_run(report_run: Path) -> None:
    metrics = json.loads((report_run / "metrics.json").read_text())
    audit = json.loads((report_run / "audit.json").read_text())
    assert metrics["audit"]["totals"] == audit["totals"]
    assert metrics["audit"]["file"] == "audit.json"
    for name in ("mislabeled", "duplicate_identities", "leakage", "outliers"):
        scores = [entry["score"] for entry in audit[name]]
        leak = name == "leakage"
        assert scores == sorted(scores, reverse=not leak), name  # most suspect first
        assert name in audit["scores"]
    outlier = audit["outliers"][0]  # digits has no files: split and index name the image
    assert outlier["split"] in ("trainval", "test") and "path" not in outlier
    assert (report_run / "plots" / "audit.png").is_file()
    assert "## Audit" in (report_run / "report.md").read_text()
    record = json.loads((report_run / "plots" / "pair_explain.json").read_text())
    assert record["checkpoint"] == metrics["checkpoint"] and len(record["pairs"]) == 2
    assert record["weights_sha256"] == metrics["weights_sha256"]  # the report matches by it
    worst = sorted(record["pairs"], key=lambda pair: pair["average_precision"])
    assert worst == record["pairs"]  # worst first
    for pair in record["pairs"]:
        assert pair["false_rank"] >= 1 and pair["true_rank"] >= 1
        assert (pair["false_rank"] == 1) != (pair["true_rank"] == 1)  # one of them leads
    assert (report_run / "plots" / "pair_explain.png").is_file()


@pytest.mark.slow
def test_report_html_is_one_self_contained_file(report_run: Path) -> None:
    page = (report_run / "report.html").read_text()
    assert len(page.encode()) < 10 * 2**20
    # Every image is a data URI and every script inline: nothing to fetch.
    assert re.findall(r'<img[^>]*\ssrc="(?!data:)', page) == []
    assert re.search(r"<script[^>]*\bsrc=", page) is None
    assert re.search(r"<link[^>]*\bhref=", page) is None
    for heading in ("Recipe", "Metrics", "Training", "Test features (UMAP)", "Worst queries"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert '<section id="audit">' in page and "pairwise explanations" in page
    # Digits has no files: the rank lists name test rows, as before, and no files.
    assert re.search(r"test\[\d+\] \(\w+\): its first", page)
    assert "<th>ranked files</th>" not in page
    assert "Rank lists by file" not in (report_run / "report.md").read_text()


@pytest.mark.slow
def test_report_html_in_the_browser(report_run: Path, browser: Any) -> None:
    from plp_pipelines import load_features
    from plp_viz._html import EMBEDDING_NAME

    open_page(browser, report_run / "report.html", EMBEDDING_NAME)
    drawn = browser.execute_script(
        "return Bokeh.documents[0].get_model_by_name(arguments[0]).data_source.data.x.length",
        EMBEDDING_NAME,
    )
    assert drawn == len(load_features(report_run / "features" / "test.npz").labels)
    point = isolated_point(browser, EMBEDDING_NAME)
    shown, thumb, link = hover(browser, EMBEDDING_NAME, point)
    assert thumb in shown  # hovering shows the test image
    click_here(browser)
    assert browser.current_url.endswith(link)
    display = "return getComputedStyle(document.getElementById(arguments[0])).display"
    assert browser.execute_script(display, link[1:]) == "block"  # its rank list opened
    assert console_errors(browser) == []
    assert requests_leaving_file(browser) == []


@pytest.mark.slow
def test_reports_name_the_files_of_the_rank_lists(market_run: Path) -> None:
    """With files (Market-1501) report.md and report.html name each query's and neighbour's file,
    as rank_list.json does; the interactive rank lists do too (drawn here from the run's files)."""
    import html

    from plp_pipelines import load_config, load_features
    from plp_pipelines._methods import EvaluationContext
    from plp_pipelines._protocols import DataFacts
    from plp_pipelines._report_html import draw_interactive_umap

    listed = json.loads((market_run / "plots" / "rank_list.json").read_text())["queries"]
    report = (market_run / "report.md").read_text()
    page = (market_run / "report.html").read_text()
    assert "## Rank lists by file" in report and len(listed) == 8
    for row in listed:
        line = f"{row['kind']} query `{row['query']}` (label {row['label']}, AP {row['AP']:.3f})"
        assert line in report, line
        after = report[report.index(line) :]
        for rank, item in enumerate(row["results"], start=1):
            mark = "✓" if item["match"] else "✗"
            assert f"  {rank}. {mark} `{item['path']}` (label {item['label']})" in after
            assert f"<code>{html.escape(item['path'])}</code>" in page
        assert f"{row['kind']}: <code>{html.escape(row['query'])}</code>" in page

    # The clickable rank lists (evaluate --umap) from the run's own features and files.
    config = load_config(market_run / "config.toml")
    features = {
        split: load_features(market_run / "features" / f"{split}.npz")
        for split in ("test", "query", "gallery")
        if (market_run / "features" / f"{split}.npz").is_file()
    }

    class Images:  # stands in for the datamodule: images by split, all grey
        def split_dataloader(self, split: str) -> Any:
            dataset = [(np.zeros((3, 8, 4), np.float32), 0)] * len(features[split].labels)
            return type("Loader", (), {"dataset": dataset})()

    context = EvaluationContext(
        config, features, Images(), DataFacts(), None, False, market_run / "x.ckpt"
    )  # type: ignore[arg-type]
    test = features["test"]
    embedding = type("Embedding", (), {"indices": np.arange(3), "points": np.eye(3)[:, :2]})()
    part = draw_interactive_umap(context, embedding, market_run / "umap.html").read_text()
    gallery = features[context.gallery_split]
    assert test.paths is not None and gallery.paths is not None
    for row in range(3):
        assert f"<code>{html.escape(str(test.paths[row]))}</code>" in part
    named = [p for p in gallery.paths if f"<code>{html.escape(str(p))}</code>" in part]
    assert len(named) >= 5  # each list's neighbours, by file
