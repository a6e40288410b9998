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
