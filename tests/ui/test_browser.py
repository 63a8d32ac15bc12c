"""The web UI in a real browser: the main flows, clicked through, asserting what is shown."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

ROWS = "#runs-table tbody tr"
#: True once every chart canvas on the page has pixels drawn on it.
DRAWN = """() => {
  const canvases = [...document.querySelectorAll('figure.chart canvas')];
  return canvases.length > 0 && canvases.every(c => {
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
    return false;
  });
}"""


def _wait_drawn(page: Any) -> None:
    # polled from here: wait_for_function polls with eval(), which the page's CSP forbids
    deadline = time.monotonic() + 10
    while not page.evaluate(DRAWN):
        assert time.monotonic() < deadline, "charts were not drawn"
        page.wait_for_timeout(50)


def _open_experiment(page: Any, name: str = "churn") -> None:
    page.goto("/ui/experiments")
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.locator("h1")).to_contain_text(name)


def _search(page: Any, text: str) -> None:
    page.fill("#filter", text)
    page.press("#filter", "Enter")


def _names(page: Any) -> list[str]:
    return [n.strip() for n in page.locator(f"{ROWS} a.runlink").all_inner_texts()]


def test_experiments_and_runs_table(page: Any, shots: Path) -> None:
    page.goto("/ui/")
    rows = page.locator("#experiments tbody tr")
    expect(rows).to_have_count(3)
    churn = rows.filter(has_text="churn")
    expect(churn.locator("td.num")).to_have_text("64")
    _open_experiment(page)
    expect(page.locator(ROWS)).to_have_count(50)
    expect(page.locator("#page-info")).to_have_text("Runs 1-50 · page 1")
    page.screenshot(path=str(shots / "runs-table.png"))

    # a valid filter: htmx swaps the table in place and pushes the URL
    _search(page, "metrics.auc > 0.85 and params.model = 'rf'")
    expect(page.locator(ROWS)).to_have_count(3)
    assert sorted(_names(page)) == ["sweep-51", "sweep-54", "sweep-57"]
    assert "filter=metrics.auc" in page.url

    # an invalid one: the parser's message with its caret, inline
    _search(page, "metrics.auc > and")
    error = page.locator("#filter-error")
    expect(error).to_contain_text("Invalid filter at position 14")
    expect(error).to_contain_text("^")
    expect(page.locator(ROWS)).to_have_count(0)
    expect(page.locator("#filter")).to_have_value("metrics.auc > and")


def test_sort_page_and_choose_columns(page: Any) -> None:
    _open_experiment(page)
    page.locator('thead a.sort[data-sort="metrics.auc"]').click()
    expect(page.locator("thead a.sorted")).to_contain_text("▼")
    expect(page.locator(f"{ROWS} a.runlink").first).to_have_text("train-v2")
    assert "order=metrics.auc+DESC" in page.url
    page.locator('thead a.sort[data-sort="metrics.auc"]').click()
    expect(page.locator("thead a.sorted")).to_contain_text("▲")
    expect(page.locator(f"{ROWS} a.runlink").first).to_have_text("sweep-00")

    page.get_by_role("link", name="Next →").click()
    expect(page.locator("#page-info")).to_have_text("Runs 51-64 · page 2")
    expect(page.locator(ROWS)).to_have_count(14)
    assert "order=metrics.auc+ASC" in page.url  # the order survives paging
    page.get_by_role("link", name="← Prev").click()
    expect(page.locator("#page-info")).to_have_text("Runs 1-50 · page 1")
    expect(page.locator(f"{ROWS} a.runlink").first).to_have_text("sweep-00")

    page.locator("#colchooser summary").click()
    page.locator('#colchooser input[value="tags.team"]').check()
    page.locator('#colchooser input[value="params.lr"]').uncheck()
    page.locator("#apply-columns").click()
    expect(page.locator("thead th.col-tags")).to_have_text("tags.team")
    expect(page.locator('thead a[data-sort="params.lr"]')).to_have_count(0)
    assert "col=tags.team" in page.url
    page.reload()  # the choice lives in the URL
    expect(page.locator("thead th.col-tags")).to_have_text("tags.team")


def test_run_page(page: Any, shots: Path) -> None:
    _open_experiment(page)
    _search(page, "name = 'train-best'")
    expect(page.locator(ROWS)).to_have_count(1)
    page.get_by_role("link", name="train-best").click()
    expect(page.locator("h1")).to_contain_text("train-best")
    expect(page.locator("#params")).to_contain_text("logreg")
    expect(page.locator("#info")).to_contain_text("fold-1")  # its child run
    expect(page.locator("#tags")).to_contain_text("team")
    expect(page.locator("#keel-tags")).not_to_have_attribute("open", "")
    expect(page.locator("figure.chart canvas")).to_have_count(2)  # auc and loss
    _wait_drawn(page)
    expect(page.locator("#environment")).to_contain_text("main")  # git branch
    expect(page.locator("#git-commit")).to_contain_text("dirty")
    lineage = page.locator("#lineage")
    expect(lineage).to_contain_text("dataset:churn@3")
    expect(lineage).to_contain_text("model_version:churn/1")

    page.locator('a.artifact[data-path="notes.txt"]').click()
    expect(page.locator("pre.artifact-text")).to_contain_text("<b>not bold</b>")  # escaped
    assert "artifact=notes.txt" in page.url
    page.locator('a.artifact[data-path="config.json"]').click()
    expect(page.locator("pre.artifact-text")).to_contain_text('"features": [')
    page.go_back()  # htmx restores its snapshot: the charts are drawn again
    expect(page.locator("pre.artifact-text")).to_contain_text("not bold")
    expect(page.locator("figure.chart canvas")).to_have_count(2)
    _wait_drawn(page)
    page.locator('a.artifact[data-path="eval/predictions.csv"]').click()
    expect(page.locator("table.artifact-table tbody tr")).to_have_count(3)
    page.locator('a.artifact[data-path="plots/roc.png"]').click()
    image = page.locator("img.artifact-image")
    expect(image).to_be_visible()
    page.wait_for_function("document.querySelector('img.artifact-image').naturalWidth > 0")
    assert image.evaluate("img => img.naturalWidth") == 96
    page.locator('a.artifact[data-path="sample.parquet"]').click()
    table = page.locator("table.artifact-table")
    expect(table.locator("tbody tr")).to_have_count(50)
    expect(table.locator("thead")).to_contain_text("customer")
    expect(page.locator("#preview")).to_contain_text("120 rows, 2 columns")
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    page.goto(page.url)  # the preview is part of the page when loaded directly
    expect(page.locator("table.artifact-table tbody tr")).to_have_count(50)


def test_failed_run_shows_its_traceback(page: Any) -> None:
    _open_experiment(page)
    _search(page, "status = 'failed'")
    page.get_by_role("link", name="broken").click()
    expect(page.locator("pre.traceback")).to_contain_text("RuntimeError: out of memory")


def test_compare_two_runs(page: Any, shots: Path) -> None:
    _open_experiment(page)
    _search(page, "params.model = 'logreg'")
    expect(page.locator(ROWS)).to_have_count(2)
    for box in page.locator(f"{ROWS} input.pick").all():
        box.check()
    page.locator("#compare-button").click()
    expect(page.locator("h1")).to_have_text("Compare 2 runs")
    diff = page.locator("#diff-table")
    expect(diff.locator('tr[data-key="params.C"]')).to_have_class(re.compile("differs"))
    expect(diff.locator('tr[data-key="params.lr"]')).to_have_class(re.compile("same"))
    assert sorted(diff.locator('tr[data-key="params.C"] td').all_inner_texts()) == ["0.5", "1.0"]
    expect(page.locator("#parallel svg.parcoords path.pc-line")).to_have_count(2)
    expect(page.locator("#metric-charts figure.chart canvas")).to_have_count(2)
    page.screenshot(path=str(shots / "compare.png"), full_page=True)
    page.locator("#only-diff").check()
    expect(diff.locator('tr[data-key="params.lr"]')).to_be_hidden()


def test_models_and_model_card(page: Any, shots: Path) -> None:
    page.goto("/ui/models")
    page.get_by_role("link", name="churn", exact=True).click()
    versions = page.locator("#versions tbody tr")
    expect(versions).to_have_count(2)
    expect(page.locator('#versions tr[data-version="1"]')).to_contain_text("@champion")
    expect(page.locator('#versions tr[data-version="1"]')).to_contain_text("signed")
    expect(page.locator("#protection")).to_contain_text("Production")
    expect(page.locator("#protection")).to_contain_text("ann")
    page.get_by_role("link", name="v1", exact=True).click()
    card = page.locator("#model-card")
    expect(card.locator("h1")).to_have_text("Model card: churn v1")
    expect(card).to_contain_text("Rank customers for retention offers.")
    expect(card).to_contain_text("dataset:churn@3")
    page.screenshot(path=str(shots / "model-card.png"), full_page=True)


def test_approve_and_self_approval(page: Any, shots: Path) -> None:
    page.goto("/ui/approvals")
    rows = page.locator("table.requests tbody tr")
    expect(rows).to_have_count(2)

    # ann asked for the champion alias herself: refused, with the reason
    mine = rows.filter(has_text="@champion")
    mine.get_by_role("button", name="Approve").click()
    expect(page.locator("#refusal")).to_contain_text("ann requested this change")
    expect(page.locator("table.requests tbody tr")).to_have_count(2)
    page.screenshot(path=str(shots / "approvals.png"), full_page=True)

    # dev asked for Production: ann approves, the stage changes
    theirs = page.locator("table.requests tbody tr").filter(has_text="Production")
    theirs.locator('input[name="comment"]').fill("checked the eval")
    theirs.get_by_role("button", name="Approve").click()
    expect(page.locator("#notice")).to_contain_text("approved by ann. The change is applied.")
    expect(page.locator("table.requests tbody tr")).to_have_count(1)
    page.goto("/ui/models/churn")
    expect(page.locator('#versions tr[data-version="2"] .stage')).to_have_text("Production")
    page.goto("/ui/models/churn/versions/2")
    expect(page.locator("#model-card")).to_contain_text("checked the eval")


def test_lineage_graph(page: Any, shots: Path) -> None:
    page.goto("/ui/lineage")
    page.get_by_role("link", name="model_version:churn/1").click()
    graph = page.locator("#lineage-graph svg")
    dataset = graph.locator('a[data-node="dataset:churn@3"]')
    run = graph.locator('a[data-node^="run:"]').first
    model = graph.locator('a[data-node="model_version:churn/1"]')
    for node in (dataset, run, model):
        expect(node).to_be_visible()
    expect(run).to_contain_text("train-best")  # runs are labelled by name
    xs = [n.bounding_box()["x"] for n in (dataset, run, model)]
    assert xs[0] < xs[1] < xs[2], xs  # sources on the left
    expect(page.locator("details.fold")).to_contain_text("trained_on")
    page.screenshot(path=str(shots / "lineage.png"), full_page=True)
    run.click()
    expect(page.locator("h1")).to_contain_text("train-best")


def test_audit_log(page: Any, shots: Path) -> None:
    page.goto("/ui/audit")
    expect(page.locator("#chain-status")).to_contain_text("Hash chain intact")
    seqs = [int(s) for s in page.locator("#audit-table tbody td.num").all_inner_texts()]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) >= 5  # newest first
    page.fill('input[name="prefix"]', "model:churn@")
    page.get_by_role("button", name="Filter").click()
    objects = page.locator("#audit-table tbody tr td:nth-child(5)").all_inner_texts()
    assert objects and all(o.startswith("model:churn@") for o in objects)
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
