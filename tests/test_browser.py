"""The upload page in a real headless Chromium, through nginx and Gunicorn, with its script on.

What a visitor sees is checked as pixels and numbers: the heatmap the page colours itself must
equal the server's heatmap, its downloads must equal the API's files. Screenshots go to
``$MIDAS_TEST_ARTIFACTS`` (default ``test-artifacts/`` in the repository).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import zipfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from devtools.servers import gunicorn, nginx, nginx_proxy
from devtools.support import ROOT, photo_640x480_jpeg

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("MIDAS_TEST_ARTIFACTS", ROOT / "test-artifacts"))
RESULT_TIMEOUT_S = 60


class Site:
    def __init__(self, url: str, app_url: str, nginx_folder: Path) -> None:
        self.url = url
        self.app_url = app_url  # Gunicorn directly: the test's own requests skip nginx's log
        self.nginx_folder = nginx_folder

    def predict_requests_seen_by_nginx(self) -> int:
        log = (self.nginx_folder / "nginx.log").read_text()
        return sum('path="/predict"' in line for line in log.splitlines())

    def reference(self, photo: Path, **params: str) -> bytes:
        with open(photo, "rb") as handle:
            response = requests.post(
                f"{self.app_url}/predict", files={"image": handle}, params=params, timeout=60
            )
        response.raise_for_status()
        return response.content


@pytest.fixture(scope="module")
def site(random_model_path, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("browser-stack")
    with ExitStack() as stack:
        app_url, _ = stack.enter_context(gunicorn(random_model_path, workdir, workers=1))
        proxy = stack.enter_context(nginx_proxy(app_url, workdir))
        yield Site(proxy.http, app_url, proxy.folder)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Real photos: scikit-image's coffee (600x400), chelsea at 640x480, and a broken 'JPEG'."""
    from skimage import data

    folder = tmp_path_factory.mktemp("browser-photos")
    coffee = folder / "coffee.jpg"
    cv2.imwrite(str(coffee), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    cat = folder / "cat-640x480.jpg"
    cat.write_bytes(photo_640x480_jpeg())
    broken = folder / "notes.jpg"
    broken.write_text("this is not a photo")
    return {"coffee": coffee, "cat": cat, "broken": broken}


@pytest.fixture
def downloads(tmp_path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(tmp_path, downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-unsafe-swiftshader",  # WebGL in software (SwiftShader), for the 3D view
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--use-fake-device-for-media-stream",  # a synthetic webcam, allowed without a prompt
        "--use-fake-ui-for-media-stream",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def choose(browser, photo: Path) -> None:
    """What a visitor does: pick a file in the page's file input, nothing more."""
    browser.find_element(By.ID, "image").send_keys(str(photo))


def wait_for_result(browser) -> float:
    """Wait until the page shows a heatmap; the page's own ms from choosing to showing it."""
    elapsed = WebDriverWait(browser, RESULT_TIMEOUT_S).until(
        lambda b: b.find_element(By.ID, "result").get_attribute("data-elapsed-ms")
    )
    assert browser.find_element(By.ID, "heat").is_displayed()
    return float(elapsed)


def shown_heatmap(browser) -> np.ndarray:
    """The pixels of the heatmap picture the page shows (RGB), read back through a canvas."""
    data_url = browser.execute_script(
        """const heat = document.getElementById('heat');
        const canvas = document.createElement('canvas');
        [canvas.width, canvas.height] = [heat.naturalWidth, heat.naturalHeight];
        canvas.getContext('2d').drawImage(heat, 0, 0);
        return canvas.toDataURL('image/png');"""
    )
    encoded = data_url.split(",", 1)[1]
    return decode(base64.b64decode(encoded), cv2.IMREAD_COLOR)[..., ::-1]


def decode(encoded: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(encoded, np.uint8), flags)


def assert_matches_server_heatmap(shown: np.ndarray, site: Site, photo: Path, colormap: str):
    """Equal to the server's heatmap of the same photo, allowing a rounding tie to land on the
    neighbouring colour-table entry (OpenCV rounds in float32 with FMA, the page in float64)."""
    server = decode(site.reference(photo, output="heatmap", format="png", colormap=colormap))
    server = server[..., ::-1]
    levels = decode(site.reference(photo, output="heatmap", format="png", colormap="gray"))
    levels = levels[..., 0].astype(int)
    table = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(1, 256), _cv_code(colormap))
    table = table[0, :, ::-1].astype(int)
    assert shown.shape == server.shape
    exact = np.all(shown == server, axis=2)
    assert exact.mean() > 0.999, f"only {exact.mean():.4%} of pixels equal the server's"
    near = [np.all(shown == table[np.clip(levels + k, 0, 255)], axis=2) for k in (-1, 0, 1)]
    assert np.logical_or.reduce(near).all()


def _cv_code(colormap: str) -> int:
    from midas_service.images.visualize import COLORMAPS

    return COLORMAPS[colormap]


def network_log(browser) -> list[dict]:
    """Chrome's DevTools network events since the last call."""
    return [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]


def requests_by_page(events: list[dict], site: Site) -> list[str]:
    """URLs of every request made for a document of the site (the browser's own start page,
    chrome://new-tab-page, is not the site's doing)."""
    return [
        event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
        and event["params"].get("documentURL", "").startswith(site.url)
    ]


def page_csp(events: list[dict], site: Site) -> str:
    """The Content-Security-Policy header of the site's page as the browser received it."""
    for event in events:
        params = event.get("params", {})
        response = params.get("response", {})
        if event["method"] == "Network.responseReceived" and response.get("url") == f"{site.url}/":
            headers = {k.lower(): v for k, v in response["headers"].items()}
            return headers.get("content-security-policy", "")
    return ""


def predict_entries(browser) -> int:
    return browser.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => new URL(e.name).pathname === '/predict').length"
    )


def wait_for_download(folder: Path, name: str) -> Path:
    path = folder / name
    WebDriverWait(None, 30, poll_frequency=0.1).until(
        lambda _: path.exists() and not list(folder.glob("*.crdownload"))
    )
    return path


def save_full_page_screenshot(browser, name: str, width: int) -> Path:
    """The whole page at ``width`` CSS pixels, as a test artifact."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    browser.save_screenshot(str(path))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def test_choose_a_photo_slide_recolour_and_download(site, browser, photos, downloads):
    browser.get(f"{site.url}/")
    assert "untrained model" in browser.find_element(By.CSS_SELECTOR, ".banner").text
    events = network_log(browser)
    csp = page_csp(events, site)
    assert "default-src 'none'" in csp and "script-src 'self';" in csp
    background = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 17, 17)"  # the stylesheet came from nginx's /static/
    for module in (
        "app",
        "upload",
        "depth",
        "webcam",
        "view3d",
    ):  # ES modules need a JavaScript type
        response = requests.get(f"{site.url}/static/{module}.js", timeout=10)
        assert response.headers["Content-Type"] == "application/javascript"
        assert "Expires" in response.headers and "Server-Timing" not in response.headers  # nginx
    # The script took over: no submit button, the drop zone is a keyboard control.
    assert not browser.find_element(By.CSS_SELECTOR, "button[type=submit]").is_displayed()
    dropzone = browser.find_element(By.ID, "dropzone")
    assert dropzone.get_attribute("tabindex") == "0" and dropzone.get_attribute("role") == "button"

    predicts_before = site.predict_requests_seen_by_nginx()
    choose(browser, photos["coffee"])
    wait_for_result(browser)
    photo, heat = browser.find_element(By.ID, "photo"), browser.find_element(By.ID, "heat")
    natural = "return [arguments[0].naturalWidth, arguments[0].naturalHeight]"
    assert browser.execute_script(natural, heat) == [600, 400]
    assert browser.execute_script(natural, photo) == [600, 400]
    assert photo.rect == heat.rect  # the same box: the slider compares aligned pixels
    assert_matches_server_heatmap(shown_heatmap(browser), site, photos["coffee"], "inferno")
    assert site.predict_requests_seen_by_nginx() == predicts_before + 1
    assert "infer" in browser.find_element(By.ID, "timings").text  # from Server-Timing

    # Before/after slider, by keyboard only.
    compare = browser.find_element(By.ID, "compare")
    before = compare.screenshot_as_png
    clip = "return getComputedStyle(arguments[0]).clipPath"
    assert browser.execute_script(clip, heat) == "inset(0px 0px 0px 50%)"
    split = browser.find_element(By.ID, "split")
    split.send_keys(*[Keys.ARROW_LEFT] * 20)
    assert split.get_attribute("value") == "30"
    assert browser.execute_script(clip, heat) == "inset(0px 0px 0px 30%)"
    assert compare.screenshot_as_png != before
    save_full_page_screenshot(browser, "page-desktop-1280.png", width=1280)

    # Another colormap: recoloured in the page, no new request to the model.
    inferno = shown_heatmap(browser)
    Select(browser.find_element(By.ID, "colormap")).select_by_value("magma")
    WebDriverWait(browser, 10).until(lambda b: heat.get_attribute("data-colormap") == "magma")
    magma = shown_heatmap(browser)
    assert np.abs(magma.astype(int) - inferno).mean() > 10
    assert_matches_server_heatmap(magma, site, photos["coffee"], "magma")
    assert site.predict_requests_seen_by_nginx() == predicts_before + 1
    assert predict_entries(browser) == 1

    # Pointing at the picture reads the depth there.
    ActionChains(browser).move_to_element(heat).perform()
    assert "relative depth" in browser.find_element(By.ID, "probe").text

    # Downloads, named after the photo, equal to the API's files.
    browser.find_element(By.ID, "download-png16").click()
    png16 = decode(wait_for_download(downloads, "coffee-depth16.png").read_bytes())
    assert png16.dtype == np.uint16 and png16.shape == (400, 600)
    server16 = decode(site.reference(photos["coffee"], output="depth", format="png16"))
    assert np.abs(png16.astype(int) - server16).max() <= 1
    browser.find_element(By.ID, "download-npy").click()
    depth = np.load(wait_for_download(downloads, "coffee-depth.npy"))
    server_depth = np.load(io.BytesIO(site.reference(photos["coffee"], output="depth")))
    assert depth.dtype == np.float32 and depth.shape == (400, 600)
    # Two runs of the model differ in the last bits (threads add in varying order).
    span = float(server_depth.max() - server_depth.min())
    assert np.abs(depth - server_depth).max() <= 1e-5 * span
    browser.find_element(By.ID, "download-heatmap").click()
    heatmap_file = cv2.imread(str(wait_for_download(downloads, "coffee-depth.png")))
    assert np.array_equal(heatmap_file[..., ::-1], magma)

    # Nothing from elsewhere, nothing refused by the CSP, no script error.
    origin = urlsplit(site.url)
    made = requests_by_page(events + network_log(browser), site)
    assert f"{site.url}/static/app.js" in made and len(made) > 5
    for url in made:
        parts = urlsplit(url)
        assert parts.scheme in ("blob", "data") or (parts.scheme, parts.netloc) == (
            origin.scheme,
            origin.netloc,
        ), url
    assert browser.get_log("browser") == []


def canvas_picture(element) -> np.ndarray:
    """What the browser shows of ``element`` (RGB), from a screenshot of it."""
    return decode(element.screenshot_as_png, cv2.IMREAD_COLOR)[..., ::-1]


def test_the_photo_in_3d_renders_orbits_and_downloads(site, browser, photos, downloads):
    from plyfile import PlyData

    browser.get(f"{site.url}/")
    choose(browser, photos["coffee"])
    wait_for_result(browser)
    predicts_before = site.predict_requests_seen_by_nginx()
    browser.find_element(By.ID, "show-3d").click()
    section = browser.find_element(By.ID, "view3d")
    WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda _: section.get_attribute("data-ready"))
    assert site.predict_requests_seen_by_nginx() == predicts_before + 2  # the GLB and the PLY
    canvas = browser.find_element(By.ID, "canvas3d")
    assert canvas.is_displayed() and int(canvas.get_attribute("data-triangles")) > 0
    assert "Shift+arrows turn" in browser.find_element(By.ID, "view3d-status").text

    # The first frame is seen from where the photo was taken: it is the photo, right way up
    # (torn where the random model's depth jumps, so the dark background shows through).
    first = canvas_picture(canvas)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "view3d-first-frame.png").write_bytes(canvas.screenshot_as_png)
    assert first.std() > 20, "the 3D canvas is blank"
    photo = cv2.imread(str(photos["coffee"]))[..., ::-1]
    assert abs(first.shape[1] / first.shape[0] - 1.5) < 0.01  # the view has the photo's shape
    seen = cv2.resize(first, (photo.shape[1], photo.shape[0]), interpolation=cv2.INTER_AREA)
    upright = np.corrcoef(seen.ravel().astype(float), photo.ravel().astype(float))[0, 1]
    upside_down = np.corrcoef(seen.ravel().astype(float), photo[::-1].ravel().astype(float))[0, 1]
    assert upright > 0.5 and upright > upside_down + 0.3, (upright, upside_down)

    # Keyboard: Shift+arrows turn the view, + zooms.
    frames = int(canvas.get_attribute("data-frames"))
    browser.execute_script("arguments[0].focus()", canvas)
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(*[Keys.ARROW_LEFT] * 6).key_up(
        Keys.SHIFT
    ).perform()
    turned = canvas_picture(canvas)
    assert int(canvas.get_attribute("data-frames")) > frames
    assert np.abs(turned.astype(int) - first).mean() > 5
    canvas.send_keys("+++")
    zoomed = canvas_picture(canvas)
    assert np.abs(zoomed.astype(int) - turned).mean() > 5
    (ARTIFACTS / "view3d-turned.png").write_bytes(canvas.screenshot_as_png)

    # The downloads are the API's files, named after the photo.
    link = browser.find_element(By.ID, "download-ply")
    assert link.get_attribute("download") == "coffee.ply"
    link.click()
    mine = PlyData.read(str(wait_for_download(downloads, "coffee.ply")))["vertex"].data
    theirs = PlyData.read(
        io.BytesIO(site.reference(photos["coffee"], output="pointcloud", format="ply"))
    )["vertex"].data
    assert len(mine) == len(theirs) == 512 * 341
    for channel in ("red", "green", "blue"):
        assert np.array_equal(mine[channel], theirs[channel])
    assert np.allclose(mine["z"], theirs["z"], rtol=1e-4)
    browser.find_element(By.ID, "download-glb").click()
    glb = wait_for_download(downloads, "coffee.glb").read_bytes()
    assert (
        glb[:4] == b"glTF"
        and abs(len(glb) - len(site.reference(photos["coffee"], output="mesh"))) < 4096
    )
    # No CSP refusal, no script error; SwiftShader's notes on the screenshots' pixel reads
    # ("GL Driver Message ... GPU stall due to ReadPixels") are the software GPU's, not ours.
    logs = [e for e in browser.get_log("browser") if "GL Driver Message" not in e["message"]]
    assert logs == []


def test_a_broken_file_shows_an_error_and_the_next_photo_works(site, browser, photos):
    browser.get(f"{site.url}/")
    choose(browser, photos["broken"])
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda _: error.is_displayed())
    assert "could not be used as a photo" in error.text and "not a supported image" in error.text
    assert "{" not in error.text  # words, not a JSON dump
    assert not browser.find_element(By.ID, "output").is_displayed()

    choose(browser, photos["cat"])
    elapsed_ms = wait_for_result(browser)
    assert not error.is_displayed()
    assert browser.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
        browser.find_element(By.ID, "heat"),
    ) == [640, 480]
    print(f"640x480 photo: heatmap shown {elapsed_ms:.0f} ms after choosing it (shared CPU)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "time-to-heatmap-640x480.txt").write_text(f"{elapsed_ms:.1f} ms\n")
    # The only console entry is Chrome's note of the refused upload, no script error.
    logs = browser.get_log("browser")
    assert all("status of 415" in entry["message"] for entry in logs), logs


def test_phone_width_keyboard_and_an_example(site, browser):
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    browser.get(f"{site.url}/")
    # Enter on the focused drop zone opens the file chooser.
    browser.execute_script(
        "document.getElementById('image').addEventListener('click', e => {"
        " e.preventDefault(); document.body.dataset.chooserOpened = 'yes'; })"
    )
    dropzone = browser.find_element(By.ID, "dropzone")
    browser.execute_script("arguments[0].focus()", dropzone)
    dropzone.send_keys(Keys.ENTER)
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-chooser-opened") == "yes"

    browser.find_element(By.CSS_SELECTOR, "[data-example='chelsea.jpg']").click()
    wait_for_result(browser)
    assert browser.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
        browser.find_element(By.ID, "heat"),
    ) == [451, 300]
    assert browser.find_element(By.ID, "download-heatmap").get_attribute("download") == (
        "chelsea-depth.png"
    )
    widths = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[1] == 390 and widths[0] <= widths[1], widths
    browser.find_element(By.CSS_SELECTOR, "input[name=view][value=side]").click()
    widths = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths
    save_full_page_screenshot(browser, "page-phone-390.png", width=390)
    assert browser.get_log("browser") == []


def test_busy_and_unreachable_server_are_explained(random_model_path, tmp_path, browser, photos):
    """Gunicorn gone: nginx answers 503 in JSON; nginx gone too: the request cannot connect."""
    with ExitStack() as app_stack, ExitStack() as proxy_stack:
        app_url, _ = app_stack.enter_context(gunicorn(random_model_path, tmp_path, workers=1))
        url = proxy_stack.enter_context(nginx(app_url, tmp_path))
        browser.get(f"{url}/")
        WebDriverWait(browser, 10).until(  # the colour tables arrived while the app was up
            lambda b: b.execute_script(
                "return performance.getEntriesByType('resource')"
                ".some(e => e.name.endsWith('/colormaps.json') && e.responseEnd > 0)"
            )
        )
        app_stack.close()
        error = browser.find_element(By.ID, "error")
        choose(browser, photos["coffee"])
        WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda _: error.is_displayed())
        assert "busy" in error.text and "not reachable" in error.text, error.text
        proxy_stack.close()
        choose(browser, photos["cat"])
        unreachable = "could not be reached"
        WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda _: unreachable in error.text)
        assert browser.find_element(By.ID, "dropzone").is_displayed()


def test_webcam_sends_frames_and_shows_the_rate(site, browser):
    browser.get(f"{site.url}/")
    predicts_before = site.predict_requests_seen_by_nginx()
    button = browser.find_element(By.ID, "webcam")
    button.click()
    rate = browser.find_element(By.ID, "webcam-rate")
    WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda _: rate.get_attribute("data-fps"))
    assert float(rate.get_attribute("data-fps")) > 0 and "frames/s" in rate.text
    assert button.get_attribute("aria-pressed") == "true"
    assert site.predict_requests_seen_by_nginx() >= predicts_before + 2
    sizes = browser.execute_script(
        "const [v, p, h] = ['camera', 'photo', 'heat'].map(id => document.getElementById(id));"
        "return [[v.videoWidth, v.videoHeight], [p.naturalWidth, p.naturalHeight],"
        " [h.naturalWidth, h.naturalHeight]]"
    )
    assert sizes[0] == sizes[1] == sizes[2] and sizes[0][0] > 0, sizes
    button.click()
    assert button.get_attribute("aria-pressed") == "false"
    assert browser.execute_script("return document.getElementById('camera').srcObject") is None
    assert browser.get_log("browser") == []


def test_with_api_keys_the_page_asks_for_one_and_keeps_it_for_the_tab(
    random_model_path, tmp_path, browser, photos
):
    key = "page-key-0123"
    with ExitStack() as stack:
        app_url, _ = stack.enter_context(
            gunicorn(random_model_path, tmp_path, workers=1, MIDAS_API_KEYS=key)
        )
        url = stack.enter_context(nginx(app_url, tmp_path))
        browser.get(f"{url}/")
        field = browser.find_element(By.ID, "api-key")
        error = browser.find_element(By.ID, "error")
        choose(browser, photos["cat"])  # no key yet: said plainly, nothing sent
        WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda _: error.is_displayed())
        assert "needs an API key" in error.text and "status" not in error.text, error.text
        field.send_keys("wrong-key")
        choose(browser, photos["cat"])
        WebDriverWait(browser, RESULT_TIMEOUT_S).until(lambda _: "not accepted" in error.text)
        field.clear()
        field.send_keys(key)
        choose(browser, photos["cat"])
        wait_for_result(browser)
        assert not error.is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('midas-api-key')") == key
        browser.refresh()  # the same tab keeps it
        assert browser.find_element(By.ID, "api-key").get_attribute("value") == key
        assert browser.execute_script("return localStorage.length") == 0
        choose(browser, photos["coffee"])
        wait_for_result(browser)


@pytest.fixture(scope="module")
def job_site(random_model_path, tmp_path_factory):
    """The page with jobs on: Redis, Gunicorn behind nginx, and one real worker process."""
    from devtools.jobs_support import worker, worker_env
    from devtools.servers import redis_server

    workdir = tmp_path_factory.mktemp("browser-jobs")
    store = workdir / "store"
    queue = {"MIDAS_JOBS_QUEUE": "midas-jobs-browser"}
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(workdir))
        # One thread on both sides, like worker_env's: the same bytes need the same arithmetic.
        jobs_env = {
            "REDIS_URL": redis_url,
            "MIDAS_JOBS_DIR": str(store),
            "MIDAS_THREADS": "1",
            "MIDAS_SHARE_CORES": "off",
            **queue,
        }
        app_url, _ = stack.enter_context(
            gunicorn(random_model_path, workdir, workers=1, **jobs_env)
        )
        stack.enter_context(
            worker("browser", worker_env(redis_url, random_model_path, store, **queue), workdir)
        )
        proxy = stack.enter_context(nginx_proxy(app_url, workdir))
        yield Site(proxy.http, app_url, proxy.folder)


def job_status_text(browser) -> str:
    return browser.find_element(By.ID, "job-status").text


def test_a_zip_becomes_a_job_with_progress_and_downloads_predicts_outputs(
    job_site, browser, downloads, tmp_path
):
    from devtools.jobs_support import small_photos, zip_bytes

    photos = small_photos(80)
    archive = tmp_path / "inspection.zip"
    archive.write_bytes(zip_bytes({f"{i:02d}.jpg": photo for i, photo in enumerate(photos)}))
    browser.get(job_site.url)
    browser.find_element(By.ID, "job-file").send_keys(str(archive))
    # The bar moves while the worker goes through the photos: a fraction strictly inside (0, 1)
    # next to "Working: N of 80 photos".
    seen = WebDriverWait(browser, RESULT_TIMEOUT_S, poll_frequency=0.05).until(
        lambda b: (
            (text := job_status_text(b)).startswith("Working:")
            and 0 < float(b.find_element(By.ID, "job-progress").get_attribute("value") or 0) < 1
            and text
        )
    )
    assert " of 80 photos" in seen
    WebDriverWait(browser, 120).until(lambda b: job_status_text(b).startswith("Done:"))
    assert job_status_text(browser) == "Done: 80 outputs."
    assert browser.find_element(By.ID, "job-progress").get_attribute("value") == "1"
    saved = wait_for_download(downloads, "inspection-depth.zip")
    with zipfile.ZipFile(saved) as outputs:
        for index in (0, 41, 79):
            photo = tmp_path / f"{index:02d}.jpg"
            photo.write_bytes(photos[index])
            assert outputs.read(f"{index:02d}.jpg") == job_site.reference(photo)
    link = browser.find_element(By.ID, "job-download")
    assert link.is_displayed() and link.get_attribute("download") == "inspection-depth.zip"


def test_a_video_job_is_found_again_after_a_reload_and_plays(job_site, browser, tmp_path):
    from devtools.jobs_support import clip_bytes

    clip = tmp_path / "walk.mp4"
    clip.write_bytes(clip_bytes(frames=24))
    browser.get(job_site.url)
    browser.find_element(By.ID, "job-file").send_keys(str(clip))
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return localStorage.getItem('midas-depth-job')")
    )
    saved = json.loads(browser.execute_script("return localStorage.getItem('midas-depth-job')"))
    browser.refresh()  # the visitor reloads while the job runs (or after it ended)
    WebDriverWait(browser, 120).until(lambda b: job_status_text(b) == "Done: the depth video.")
    video = browser.find_element(By.ID, "job-video")
    assert video.is_displayed()
    # It plays: metadata read (the side-by-side width), and time moves on after play().
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return arguments[0].readyState >= 2", video)
    )
    assert browser.execute_script(
        "return [arguments[0].videoWidth, arguments[0].videoHeight]", video
    ) == [96, 64]
    browser.execute_script("arguments[0].muted = true; arguments[0].play()", video)
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return arguments[0].currentTime > 0.2", video)
    )
    # The video shown is the job's result: the page fetched it, and it lasts the clip's 2 s.
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)"
    )
    assert saved["resultUrl"] in fetched
    assert browser.execute_script("return arguments[0].duration", video) == pytest.approx(
        2.0, abs=0.1
    )
    result = requests.get(f"{job_site.app_url}{saved['resultUrl']}", timeout=30)
    assert result.status_code == 200 and result.headers["Content-Type"] == "video/mp4"
