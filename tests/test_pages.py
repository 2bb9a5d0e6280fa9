"""The pages for people, in real headless Chromium against a real frontend and worker.

Screenshots of each page are saved under the test's temp folder (kept by pytest) as artifacts.
"""
from __future__ import annotations

import hashlib
import os

import pytest

from browser import chromium_or_skip, quit_driver
from factories import make_bundle

pytestmark = pytest.mark.e2e

WAIT = 90


@pytest.fixture
def browser():
    driver = chromium_or_skip()
    yield driver
    quit_driver(driver)


def wait_for(driver, condition, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except Exception as err:  # selenium's TimeoutException: say what we waited for
        raise AssertionError(f"timed out waiting for {what}; page says: "
                             f"{driver.find_element('tag name', 'body').text[:2000]}") from err


def fill_form(driver, paths: list[str], folder: str | None = None) -> None:
    by_id = lambda name: driver.find_element("id", name)  # noqa: E731
    if folder:
        by_id("folder").send_keys(folder)
    if paths:
        by_id("files").send_keys("\n".join(paths))
    for field, value in (("submitter", "10"), ("project", "1234a"), ("instrument", "54")):
        by_id(field).clear()
        by_id(field).send_keys(value)
    by_id("keyvalues").send_keys("Tag=browser")


def make_tree(base, files: dict[str, bytes]) -> dict[str, str]:
    paths = {}
    for name, data in files.items():
        path = os.path.join(base, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        paths[name] = path
    return paths


def test_upload_a_folder_watch_it_complete_and_read_the_report(stack, browser, tmp_path):
    files = {"run7/scan-001.dat": os.urandom(300_000), "run7/sub/notes.txt": b"notes\n",
             "run7/sub/deeper/empty.bin": b""}
    make_tree(tmp_path / "pick", files)
    browser.get(stack.url + "/upload")
    browser.save_screenshot(str(tmp_path / "upload-empty.png"))
    fill_form(browser, [], folder=str(tmp_path / "pick" / "run7"))
    browser.find_element("id", "start").click()
    wait_for(browser, lambda d: "/jobs/" in d.current_url, "the job page")
    job_id = int(browser.current_url.rstrip("/").rsplit("/", 1)[1])
    wait_for(browser, lambda d: "ingest metadata" in d.find_element("css selector", ".summary").text
             and "OK" in d.find_element("css selector", ".summary").text, "the job to complete")
    browser.save_screenshot(str(tmp_path / "job-page.png"))
    report = browser.find_element("css selector", "table.files").text
    for name, data in files.items():
        assert name in report, report
        if data:
            assert hashlib.sha1(data).hexdigest() in report
    assert stack.state(job_id)["complete"] is True
    assert stack.archived(job_id) == files

    browser.get(stack.url + "/jobs")
    row = browser.find_element("css selector", f'tr[data-job="{job_id}"]')
    assert "OK" in row.text and "ingest metadata" in row.text
    browser.save_screenshot(str(tmp_path / "jobs-page.png"))


def test_running_job_progress_updates_without_reload(make_stack, browser, tmp_path):
    stack = make_stack(workers=0).start()  # the job waits until we start a worker
    job_id = stack.upload(make_bundle({"wait.txt": b"waiting"}))["job_id"]
    browser.get(stack.url + "/jobs")
    row = lambda: browser.find_element("css selector", f'tr[data-job="{job_id}"]')  # noqa: E731
    assert row().get_attribute("data-complete") == "false"
    stack.start_worker()
    wait_for(browser, lambda d: row().get_attribute("data-complete") == "true"
             and "ingest metadata" in row().text, "the row to show the finished job")
    browser.save_screenshot(str(tmp_path / "jobs-live.png"))


def test_reload_mid_upload_resumes(make_stack, browser, tmp_path):
    stack = make_stack().start()
    files = {"big/one.bin": os.urandom(12 * 1024 * 1024), "big/two.bin": os.urandom(1000)}
    paths = make_tree(tmp_path / "pick", files)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 5, "downloadThroughput": -1,
        "uploadThroughput": 2 * 1024 * 1024})  # bytes/s: the upload takes a few seconds
    browser.get(stack.url + "/upload")
    fill_form(browser, list(paths.values()))
    browser.find_element("id", "start").click()
    wait_for(browser, lambda d: float(d.find_element("id", "total").get_attribute("value"))
             >= 20, "the upload to be under way")
    browser.refresh()  # mid-upload
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    fill_form(browser, list(paths.values()))
    browser.find_element("id", "start").click()
    browser.save_screenshot(str(tmp_path / "upload-resumed.png"))
    wait_for(browser, lambda d: "/jobs/" in d.current_url, "the job page")
    job_id = int(browser.current_url.rstrip("/").rsplit("/", 1)[1])
    created = [line for line in stack.log("frontend").splitlines()
               if "tus upload" in line and " created: " in line]
    assert len(created) == 1, created  # the second start went on with the first upload
    assert stack.wait(job_id)["state"] == "OK"
    assert stack.archived(job_id) == {name.rsplit("/", 1)[1]: data for name, data in files.items()}


def test_a_failing_bundle_shows_its_reason(make_stack, browser, tmp_path):
    stack = make_stack(extra_env={"INGEST_INGEST_MAX_TOTAL_SIZE": "1000"}).start()
    paths = make_tree(tmp_path / "pick", {"too/big.bin": os.urandom(5000)})
    browser.get(stack.url + "/upload")
    fill_form(browser, list(paths.values()))
    browser.find_element("id", "start").click()
    wait_for(browser, lambda d: "/jobs/" in d.current_url, "the job page")
    wait_for(browser, lambda d: d.find_elements("css selector", ".error"), "the failure")
    reason = browser.find_element("css selector", ".error").text
    assert "Why it failed" in reason and "1000" in reason, reason
    browser.save_screenshot(str(tmp_path / "job-failed.png"))
