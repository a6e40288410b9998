"""The viewer as a person uses it: headless Chromium opens index.html from file://, clicks a layer, a unit."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f"needs Chromium at {CHROMIUM} and chromedriver at {CHROMEDRIVER} (the Makefile installs them)",
)


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _loaded(driver, image) -> bool:
    return bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))


def test_click_from_index_to_a_unit(full_atlas, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get((full_atlas / "index.html").resolve().as_uri())
    assert browser.title.startswith("Atlas of")
    layers = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.layer")]
    assert layers == ["mixed3a", "mixed3b"]
    browser.find_element(By.LINK_TEXT, "mixed3a").click()

    assert browser.title == "mixed3a - atlas"
    thumbnails = browser.find_elements(By.CSS_SELECTOR, ".grid img")
    assert len(thumbnails) == 10 and all(t.get_attribute("loading") == "lazy" for t in thumbnails)
    label = browser.find_element(By.CSS_SELECTOR, ".grid .label")
    assert label.text == "<script>document.title='pwned'</script>"  # shown as text
    assert browser.title == "mixed3a - atlas"  # and never run
    browser.find_elements(By.CSS_SELECTOR, "a.unit")[1].click()

    assert browser.title == "mixed3a:1 - atlas"  # the label's script did not run here either
    assert browser.find_element(By.ID, "label").text == "<script>document.title='pwned'</script>"
    vis = browser.find_element(By.ID, "vis")
    assert _loaded(browser, vis)
    assert browser.execute_script("return arguments[0].naturalWidth", vis) == 32
    outputs = browser.find_elements(By.CSS_SELECTOR, "#outputs a")
    assert outputs and all(_loaded(browser, a.find_element(By.TAG_NAME, "img")) for a in outputs)
    assert browser.find_element(By.ID, "branch").text == "1x1"
    screenshot = tmp_path / "unit.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 1000
    if os.environ.get("CIRCUITS_VISION_KEEP_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["CIRCUITS_VISION_KEEP_SCREENSHOT"])

    target = outputs[0].text.split("\n")[0]  # "mixed3b:<unit>"
    outputs[0].click()
    assert browser.title == f"{target} - atlas"
    assert _loaded(browser, browser.find_element(By.ID, "vis"))
    browser.find_element(By.ID, "layer").click()
    assert browser.title == "mixed3b - atlas"
    assert Path(browser.current_url.removeprefix("file://")).name == "mixed3b.html"


def test_layer_page_search_filter_and_sort(full_atlas, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from circuits_vision.atlas import store

    records = {r["unit"]: r for r in store.read_jsonl(full_atlas / "manifest.jsonl") if r["layer"] == "mixed3b"}
    browser.get((full_atlas / "layers" / "mixed3b.html").resolve().as_uri())

    def visible() -> list[int]:
        return [int(a.get_attribute("data-unit")) for a in browser.find_elements(By.CSS_SELECTOR, "#units a.unit")
                if a.is_displayed()]

    assert visible() == list(range(12))
    assert browser.find_element(By.ID, "shown").text == "12 shown"
    search = browser.find_element(By.NAME, "q")
    search.send_keys("7")
    assert visible() == [7]
    search.clear()
    search.send_keys(" ")  # an input event with an empty query: every unit again
    assert len(visible()) == 12
    branch = records[0]["branch"]
    Select(browser.find_element(By.NAME, "branch")).select_by_value(branch)
    assert visible() == [u for u, r in records.items() if r["branch"] == branch]
    Select(browser.find_element(By.NAME, "branch")).select_by_value("")
    Select(browser.find_element(By.NAME, "sort")).select_by_value("score")
    scores = [records[u]["polysemanticity"]["score"] for u in visible()]
    assert scores == sorted(scores, reverse=True) and len(scores) == 12
    threshold = sorted(scores)[6]
    browser.find_element(By.NAME, "minscore").send_keys(str(threshold))
    assert sorted(visible()) == sorted(u for u, r in records.items() if r["polysemanticity"]["score"] >= threshold)
    browser.save_screenshot(str(tmp_path / "layer.png"))
    assert (tmp_path / "layer.png").stat().st_size > 1000
    top = visible()[0]  # the most polysemantic unit shown: click through to it
    next(a for a in browser.find_elements(By.CSS_SELECTOR, "#units a.unit") if a.is_displayed()).click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda driver: driver.title == f"mixed3b:{top} - atlas")
    assert browser.find_element(By.ID, "poly-score").text == str(records[top]["polysemanticity"]["score"])
