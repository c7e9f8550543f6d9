"""The search page in a real browser: serve.py's server (``molret.cli.serve.prepare``)
runs uvicorn in a thread on a free loopback port (tiny model, tiny SMILES
library); headless Chromium, driven by Selenium, types a query, submits it
and finds result cards with drawn structures; a shared ``/?q=...`` link
renders the same way, with a script in the query shown as text.

Needs the system Chromium and its driver (Debian: ``apt-get install chromium
chromium-driver``; .ci/run installs them); skipped, saying why, without them.
"""
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("rdkit")

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
LIBRARY = """\
CCO 702
c1ccccc1 241
CC(=O)O 176
c1ccc(cc1)C(=O)O 243
CCN(CC)CC triethylamine
OC(=O)CCC(=O)O 1110
c1ccncc1 pyridine
ClC(Cl)Cl chloroform
"""
QUERY = "The molecule is a small aromatic compound. It contains one carboxylic acid and one benzene ring."
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900"]


@pytest.fixture(scope="module")
def server(web_checkpoint, tmp_path_factory):
    """Base URL of the server of ``serve.py`` (its ``prepare``: checks, socket, model, library, app) on a free
    loopback port, run by uvicorn in a thread, on the tiny model and library."""
    from molret.cli import serve as web
    root = tmp_path_factory.mktemp("browserlib")
    lib = root / "mols.smi"
    lib.write_text(LIBRARY)
    args = web.build_parser().parse_args(["--model", str(web_checkpoint), "--library", str(lib), "--port", "0",
                                          "--cache-dir", str(root / "cache"), "--device", "cpu", "--no-progress",
                                          "--no-access-log"])
    ready = web.prepare(args)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", ready.url)
    thread = threading.Thread(target=ready.server.run, kwargs={"sockets": [ready.sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready.server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.server.started, "uvicorn did not start"
    yield ready.url
    ready.server.should_exit = True
    thread.join(timeout=20)
    ready.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no Chromium / chromedriver here (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, css, count=None, timeout=30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= (count or 1))
    return driver.find_elements(By.CSS_SELECTOR, css)


def test_search_in_the_browser(browser, server):
    from selenium.webdriver.common.by import By
    d = browser
    d.get(server)
    assert "molret search" in d.title
    assert "8 molecules" in d.find_element(By.CSS_SELECTOR, ".facts").text
    assert len(d.find_elements(By.CSS_SELECTOR, ".examples a")) == 3
    assert not d.find_elements(By.CSS_SELECTOR, ".hit")
    box = d.find_element(By.ID, "q")
    box.send_keys(QUERY)
    k = d.find_element(By.ID, "k")
    k.clear()
    k.send_keys("5")
    d.find_element(By.ID, "go").click()
    cards = wait_for(d, ".hit", 5)
    assert len(cards) == 5
    assert len(d.find_elements(By.CSS_SELECTOR, ".hit svg")) == 5            # drawn structures
    svg = d.find_element(By.CSS_SELECTOR, ".hit svg")
    assert svg.size["width"] > 100 and svg.size["height"] > 100              # actually laid out
    assert [c.get_attribute("data-rank") for c in cards] == ["1", "2", "3", "4", "5"]
    assert "q=" in d.current_url and "k=5" in d.current_url                  # a shareable link
    assert d.find_element(By.ID, "q").get_attribute("value") == QUERY
    assert "Top 5 of 8 molecules" in d.find_element(By.CSS_SELECTOR, ".summary").text
    # a copy button runs the page's script
    btn = d.find_element(By.CSS_SELECTOR, "button.copy")
    btn.click()
    time.sleep(0.3)
    assert btn.text in ("copied", "copy failed")
    # an example query
    d.get(server)
    d.find_element(By.CSS_SELECTOR, ".examples a").click()
    assert len(wait_for(d, ".hit svg")) >= 1
    errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE" and "favicon" not in e["message"]]
    assert not errors, errors                                               # no script or CSP errors


def test_shared_link_and_escaping(browser, server):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    d = browser
    attack = "<script>alert(1)</script> an aromatic carboxylic acid"
    d.get(f"{server}?q={quote(attack)}&k=3")
    cards = wait_for(d, ".hit", 3)
    assert len(cards) == 3 and len(d.find_elements(By.CSS_SELECTOR, ".hit svg")) == 3
    assert attack in d.find_element(By.CSS_SELECTOR, ".summary").text          # shown as text
    with pytest.raises(NoAlertPresentException):
        d.switch_to.alert.text
    # a bad k: an error message on the page, no cards
    d.get(f"{server}?q=acid&k=1000")
    assert "k must be a whole number" in d.find_element(By.CSS_SELECTOR, ".error").text
    assert not d.find_elements(By.CSS_SELECTOR, ".hit")
