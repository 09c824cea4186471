"""What users look at, in a real browser (Debian's Chromium, driven by Playwright): the analysed
batch's asset page after a run (its checks and Materialize), the run's report.html opened from
disk, and compare's HTML page for two runs."""

import shutil
import subprocess
import sys

import pytest

from batch_pipeline_tests.conftest import EXAMPLE_DOCS, _required_service_missing, batch_config
from batch_pipeline_tests.dagster_services import wait_for_status

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need the test extra (playwright)")


# One worker runs every module using the session's webserver and daemon (conftest: dagster_services).
pytestmark = pytest.mark.xdist_group("dagster_services")


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        _required_service_missing("Chromium is not installed: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def finished_run(dagster_services) -> str:
    run_id = dagster_services.client.submit_job_execution(
        "document_batch_job", run_config=batch_config(str(EXAMPLE_DOCS), project="browser")
    )
    assert wait_for_status(lambda: dagster_services.client.get_run_status(run_id).value) == "SUCCESS"
    return run_id


def test_the_asset_page_has_a_definition_partitions_and_the_runs_materialization(
    browser,
    dagster_services,
    finished_run,
):
    page = browser.new_page()
    base = f"http://127.0.0.1:{dagster_services.port}"
    page.goto(f"{base}/assets/batch_pipeline/analysed_documents", wait_until="networkidle")
    page.get_by_text("The documents of a project analysed", exact=False).first.wait_for(timeout=30_000)
    assert "doesn't have a software definition" not in page.content()
    page.goto(f"{base}/assets/batch_pipeline/analysed_documents?view=partitions", wait_until="networkidle")
    page.get_by_text("browser", exact=True).first.wait_for(timeout=30_000)  # the project's partition
    page.goto(f"{base}/assets/batch_pipeline/analysed_documents?view=events", wait_until="networkidle")
    page.get_by_text(finished_run[:8], exact=False).first.wait_for(timeout=30_000)  # the run that produced it
    # Graph-backed: Materialize launches the pipeline from here, and the run's checks are listed.
    assert "External Asset" not in page.content()
    page.get_by_role("button", name="Materialize").first.wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Materialize").first.is_enabled()
    # The findings are on the page: the flagged documents' table and a link to the run.
    page.get_by_text("flagged_documents", exact=False).first.wait_for(timeout=30_000)
    assert page.locator(f"a[href*='/runs/{finished_run}']").count() >= 1
    # Materialize opens the launch dialog for a project's partition.
    # A first visit can open one of the UI's own overlays (a notice) over the page: close it, then
    # click the button itself.
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Materialize").first.dispatch_event("click")
    page.get_by_text("Launch runs to materialize", exact=False).first.wait_for(timeout=30_000)
    page.get_by_text("Partition selection", exact=False).first.wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    page.goto(f"{base}/assets/batch_pipeline/analysed_documents?view=checks", wait_until="networkidle")
    page.get_by_text("failure_rate", exact=True).first.wait_for(timeout=30_000)
    page.get_by_text("labelled_score", exact=True).first.wait_for(timeout=30_000)


def test_report_html_opens_from_disk_with_its_charts_and_fetches_nothing(browser, dagster_services, finished_run):
    report = dagster_services.home / "batch_pipeline" / "reports" / finished_run / "report.html"
    page = browser.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(report.as_uri(), wait_until="load")
    assert [url for url in requested if not url.startswith(("file:", "data:"))] == []
    charts = page.locator(".charts svg")
    assert charts.count() >= 2 and all(charts.nth(i).bounding_box()["width"] > 100 for i in range(charts.count()))
    flagged = page.locator("h2", has_text="Flagged documents")
    assert flagged.is_visible() and "deploy_runbook.md" in page.inner_text("body")
    # Above the fold of a laptop screen: the findings come before the charts.
    page.set_viewport_size({"width": 1280, "height": 800})
    assert flagged.bounding_box()["y"] < 800
    first_row = page.locator("h2:has-text('Flagged documents') + table tr").nth(1)
    assert first_row.bounding_box()["y"] < 800
    assert page.screenshot(full_page=True)[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_html_opens_from_disk_with_its_charts_and_the_differences(
    browser, dagster_services, finished_run, tmp_path
):
    other = dagster_services.client.submit_job_execution(
        "document_batch_job",
        run_config=batch_config(str(EXAMPLE_DOCS), project="browser", custom_instructions="second opinion"),
    )
    assert wait_for_status(lambda: dagster_services.client.get_run_status(other).value) == "SUCCESS"
    page_path = tmp_path / "compare.html"
    compare = [sys.executable, "-m", "batch_pipeline.cli.main", "compare", finished_run, other, "--format", "html"]
    page_path.write_text(
        subprocess.run(compare, env=dagster_services.env, capture_output=True, text=True, check=True).stdout
    )
    page = browser.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(page_path.as_uri(), wait_until="load")
    assert [url for url in requested if not url.startswith(("file:", "data:"))] == []
    charts = page.locator("svg")
    assert charts.count() == 2 and all(charts.nth(i).bounding_box()["width"] > 100 for i in range(2))
    body = page.inner_text("body")
    assert finished_run in body and other in body and "risk_level" in body and "passed" in body
    assert page.locator("h2", has_text="agreeing entirely").is_visible()
