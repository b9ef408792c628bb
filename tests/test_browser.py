"""The upload page in a real headless Chromium, through nginx and Gunicorn (no JavaScript on the
page: the browser posts the form and shows the answer)."""

from __future__ import annotations

import shutil
from contextlib import ExitStack

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.servers import gunicorn, nginx

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def site(random_model_path, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("browser-stack")
    with ExitStack() as stack:
        app_url, _ = stack.enter_context(gunicorn(random_model_path, workdir, workers=1))
        yield stack.enter_context(nginx(app_url, workdir))


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


def test_upload_a_photo_and_see_its_depth(site, browser, photo_dir, tmp_path):
    browser.get(f"{site}/")
    assert "untrained model" in browser.find_element(By.CSS_SELECTOR, ".banner").text
    # The stylesheet came from nginx's /static/ location.
    background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 17, 17)"
    assert f"{site}/predict" in browser.find_element(By.CSS_SELECTOR, ".api code").text
    browser.find_element(By.NAME, "image").send_keys(str(photo_dir / "chelsea.png"))
    Select(browser.find_element(By.NAME, "colormap")).select_by_value("magma")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    result = browser.find_element(By.CSS_SELECTOR, "figure img")
    size = browser.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", result
    )
    assert size == [2 * 451, 300]  # photo | heatmap
    selected = Select(browser.find_element(By.NAME, "colormap")).first_selected_option
    assert selected.get_attribute("value") == "magma"
    browser.save_screenshot(str(tmp_path / "result.png"))


def test_a_non_image_shows_an_error_on_the_page(site, browser, tmp_path):
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("this is not a photo")
    browser.get(f"{site}/")
    browser.find_element(By.NAME, "image").send_keys(str(text_file))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = browser.find_element(By.CSS_SELECTOR, ".error")
    assert "not a supported image" in error.text
    assert not browser.find_elements(By.CSS_SELECTOR, "figure img")
