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
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,900",
    ):
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
        return [
            int(a.get_attribute("data-unit"))
            for a in browser.find_elements(By.CSS_SELECTOR, "#units a.unit")
            if a.is_displayed()
        ]

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


def _synthetic_layer(directory: Path, n: int) -> list[dict]:
    """A viewer of one layer of ``n`` made-up unit records (one shared thumbnail) in ``directory``."""
    from circuits_vision.atlas import store, viewer

    store.save_png(directory / "img" / "unit.png", __import__("torch").full((3, 8, 8), 0.5))
    branches = ["1x1", "3x3", "5x5", "pool"]
    family = {"kind": "rotation", "members": [], "size": 4, "score": 0.9, "angle": 90}
    records = [
        {
            "layer": "big",
            "unit": u,
            "image": "img/unit.png",
            "page": f"units/big/{u}.html",
            "label": f"curve {u}" if u % 97 == 0 else None,
            "family": {**family, "family": u % 7} if u % 5 == 0 else "no rotation family",
            "branch": branches[u % 4],
            "tuning": {
                "color_category": "color" if u % 3 else "both",
                "orientation_selectivity": round((u * 37 % 101) / 100, 2),
            },
            "polysemanticity": {"score": round((u * 53 % 89) / 44, 3)},
        }
        for u in range(n)
    ]
    viewer.write_viewer(directory, records, {"model": "synthetic"})
    return records


def test_a_layer_of_thousands_of_units_still_filters_searches_and_sorts(browser, tmp_path):
    from selenium.webdriver.common.by import By

    n = 3000
    records = _synthetic_layer(tmp_path / "atlas", n)
    browser.get((tmp_path / "atlas" / "layers" / "big.html").resolve().as_uri())
    assert browser.find_element(By.ID, "shown").text == f"{n} shown"
    timed = """
        var form = document.getElementById('filters'), t0 = performance.now();
        form.elements[arguments[0]].value = arguments[1];
        form.dispatchEvent(new Event(arguments[0] === 'q' || arguments[0] === 'minscore' ? 'input' : 'change'));
        void document.body.offsetHeight;  // the layout of the new grid, inside the timing
        var shown = Array.prototype.filter.call(document.querySelectorAll('#units a.unit'),
            function (a) { return a.style.display !== 'none'; }).map(function (a) { return +a.dataset.unit; });
        return [performance.now() - t0, shown];"""
    times = {}

    def apply(name, value):
        ms, shown = browser.execute_script(timed, name, value)
        times[f"{name}={value}"] = round(ms, 1)
        return shown

    assert apply("q", "1234") == [1234]
    assert apply("q", "curve") == [u for u in range(n) if u % 97 == 0]
    apply("q", "")
    assert apply("branch", "5x5") == [u for u in range(n) if u % 4 == 2]
    assert apply("family", "yes") == [u for u in range(n) if u % 4 == 2 and u % 5 == 0]
    apply("family", "")
    apply("branch", "")
    shown = apply("sort", "score")
    assert len(shown) == n
    scores = [records[u]["polysemanticity"]["score"] for u in shown]
    assert scores == sorted(scores, reverse=True)
    high = apply("minscore", "1.5")
    assert sorted(high) == [u for u in range(n) if records[u]["polysemanticity"]["score"] >= 1.5]
    assert browser.find_element(By.ID, "shown").text == f"{len(high)} shown"
    screenshot = tmp_path / "big_layer.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 1000
    print(f"\nfiltering {n} units (ms per change, script and layout): {times}")  # pytest -s shows the figures
    if os.environ.get("CIRCUITS_VISION_KEEP_SCREENSHOT"):
        shutil.copy(screenshot, Path(os.environ["CIRCUITS_VISION_KEEP_SCREENSHOT"]).with_name("big_layer.png"))


def test_click_from_index_to_a_dictionary_feature_and_through_its_neighbourhood(dictionary_atlas, browser, tmp_path):
    from selenium.webdriver.common.by import By

    out, _ = dictionary_atlas
    browser.get((out / "index.html").resolve().as_uri())
    browser.find_element(By.LINK_TEXT, "mixed3b/dictionary").click()
    assert browser.title == "mixed3b/dictionary - atlas"
    cells = browser.find_elements(By.CSS_SELECTOR, "#units a.unit")
    first = cells[0].get_attribute("data-unit")
    cells[0].click()
    assert browser.title == f"mixed3b/dictionary:{first} - atlas"
    assert _loaded(browser, browser.find_element(By.ID, "vis"))
    assert _loaded(browser, browser.find_element(By.ID, "examples"))
    strongest = browser.find_element(By.CSS_SELECTOR, "#neurons a").text  # "mixed3b:<unit>"
    browser.save_screenshot(str(tmp_path / "feature.png"))
    assert (tmp_path / "feature.png").stat().st_size > 1000
    if os.environ.get("CIRCUITS_VISION_KEEP_SCREENSHOT"):
        shutil.copy(
            tmp_path / "feature.png", Path(os.environ["CIRCUITS_VISION_KEEP_SCREENSHOT"]).with_name("feature.png")
        )
    node = browser.find_element(By.CSS_SELECTOR, "#neighbourhood a.node circle")  # the strongest neuron, first
    browser.execute_script("arguments[0].scrollIntoView()", node)
    graph = tmp_path / "neighbourhood.png"
    browser.find_element(By.ID, "neighbourhood").screenshot(str(graph))
    assert graph.stat().st_size > 1000
    if os.environ.get("CIRCUITS_VISION_KEEP_SCREENSHOT"):
        shutil.copy(graph, Path(os.environ["CIRCUITS_VISION_KEEP_SCREENSHOT"]).with_name("neighbourhood.png"))
    node.click()
    assert browser.title == f"{strongest} - atlas"
    browser.back()
    browser.find_element(By.ID, "comparison").click()
    assert browser.title == "mixed3b: neurons vs dictionary features"
    assert browser.find_element(By.ID, "summary").is_displayed()
