"""The web page in a real headless Chromium (Debian's ``chromium`` driven by Playwright).

Types a product and sees the right category with a bar per category, then uploads a small
CSV catalog, watches the progress bar and downloads the results. Skips, saying why, when
``/usr/bin/chromium`` (``apt-get install chromium``) or the ``playwright`` package is missing;
``.ci/run`` installs both. Playwright's own browser download is not used.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import pytest

from tests.integration.samples import OBVIOUS

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = os.environ.get("CATEGORIZER_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CATEGORIES = {"Electronics", "Household", "Books", "Clothing & Accessories"}


@pytest.fixture(scope="module")
def browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set CATEGORIZER_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (dev extra)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(redis_factory, worker_factory, server_factory):
    """A server and a worker (interactive and catalog queues) on a Redis of their own."""
    redis_url = redis_factory(appendonly=False).url()
    worker_factory(redis_url, queues=("interactive", "catalog"))
    return server_factory(redis_url)


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def test_type_a_product_and_see_its_category(site, page):
    _, text, expected = OBVIOUS[0]
    page.goto(site.url + "/")
    page.fill("#product-text", text)
    page.click("#product-submit")
    page.wait_for_selector("#product-result:not([hidden])")
    assert page.text_content("#result-category") == expected
    bars = page.locator("#result-bars li")
    assert bars.count() == 4
    shown = {bars.nth(i).get_attribute("data-category") for i in range(4)}
    assert shown == CATEGORIES
    top = page.locator("#result-bars li.top")
    assert top.get_attribute("data-category") == expected
    width = top.locator(".bar > span").evaluate("el => parseFloat(el.style.width)")
    assert width > 50  # the winning bar is drawn
    assert page.text_content("#result-model")


def test_upload_a_catalog_and_download_its_results(site, page, tmp_path):
    page.goto(site.url + "/")
    if not page.evaluate("fetch('/openapi.json').then(r => r.json()).then(s => '/v1/catalogs' in s.paths)"):
        pytest.skip("this server has no /v1/catalogs endpoint")
    catalog = tmp_path / "catalog.csv"
    with catalog.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for pid, text, _ in OBVIOUS:
            writer.writerow([pid, text])
    page.set_input_files("#catalog-file", str(catalog))
    page.click("#catalog-submit")
    page.wait_for_selector("#catalog-done:not([hidden])")
    progress = page.locator("#catalog-progress")
    assert progress.evaluate("el => el.value === el.max && el.max >= 1")
    assert f"{len(OBVIOUS)} / {len(OBVIOUS)}" in page.text_content("#catalog-progress-text")
    with page.expect_download() as download_info:
        page.click("#catalog-download")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert [r["id"] for r in rows] == [pid for pid, _, _ in OBVIOUS]
    assert [r["category"] for r in rows] == [cat for _, _, cat in OBVIOUS]


@pytest.fixture(scope="module")
def keyed_site(site, server_factory):
    """The same Redis and worker behind a server that requires an API key."""
    return server_factory(site.app.config["REDIS_URL"], API_KEYS="alice:alice-secret-key")


def test_with_api_keys_on_the_page_asks_for_a_key_and_sends_it(keyed_site, page, tmp_path):
    _, text, expected = OBVIOUS[1]
    page.goto(keyed_site.url + "/")
    assert page.is_visible("#api-key")
    # without a key the API answers 401, and the page says why
    page.fill("#product-text", text)
    page.click("#product-submit")
    page.wait_for_selector("#product-status.error")
    assert "API key is required" in page.text_content("#product-status")
    # with the key: a category, then a catalog whose results download through the key
    page.fill("#api-key", "alice-secret-key")
    page.click("#key-save")
    page.click("#product-submit")
    page.wait_for_selector("#product-result:not([hidden])")
    assert page.text_content("#result-category") == expected
    catalog = tmp_path / "keyed.csv"
    catalog.write_text("id,text\n" + "".join(f'{pid},"{t}"\n' for pid, t, _ in OBVIOUS), encoding="utf-8")
    page.set_input_files("#catalog-file", str(catalog))
    page.click("#catalog-submit")
    page.wait_for_selector("#catalog-done:not([hidden])")
    with page.expect_download() as download_info:
        page.click("#catalog-download")
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text(encoding="utf-8"))))
    assert [(r["id"], r["category"]) for r in rows] == [(pid, cat) for pid, _, cat in OBVIOUS]


def test_without_api_keys_the_page_has_no_key_field(site, page):
    page.goto(site.url + "/")
    assert page.locator("#api-key").count() == 0
