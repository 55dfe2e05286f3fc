import os
import shutil
from pathlib import Path

import matplotlib
import pytest
import torch
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Property suites: a fixed, derandomized set of examples so `make test` is deterministic
# and quick; HYPOTHESIS_PROFILE=thorough searches ten times wider (by hand, not in CI).
_COMMON = {"deadline": None, "derandomize": True, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}
settings.register_profile("course", max_examples=50, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "course"))


@pytest.fixture(autouse=True)
def _seed_and_close_figures():
    torch.manual_seed(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# --- the course site in a browser (tests/test_site.py; tests marked `browser`) --------------

PAGE_TIMEOUT_MS = 20_000
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Without these Chromium tries to reach Google's hosts at start (update checks, sync, field trials).
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps",
                 "--disable-features=Translate,MediaRouter,OptimizationHints"]

# What the browser measures on a page: images (and how many are decoded), links, broken
# anchors, formulas (and their rendered size) and any TeX source left in the prose.
PAGE_PROBE = r"""() => {
  const images = [...document.images];
  const here = location.href.split('#')[0];
  const formulas = [...document.querySelectorAll('math')];
  const texLeft = [];
  for (const prose of document.querySelectorAll('.jp-RenderedMarkdown, td.goals')) {
    const copy = prose.cloneNode(true);
    copy.querySelectorAll('code, pre, math').forEach(e => e.remove());
    const found = copy.textContent.match(/\\[A-Za-z]{2,}|\\[()\[\]]|\$\$|\$[^$\s][^$]*\$/g);
    if (found) texLeft.push(...found);
  }
  return {
    title: document.title,
    images: images.length,
    decoded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    outputImages: document.querySelectorAll('.jp-OutputArea-output img').length,
    links: [...document.links].map(a => a.href),
    brokenAnchors: [...document.links]
      .filter(a => a.href.split('#')[0] === here && a.hash.length > 1)
      .filter(a => !document.getElementById(a.hash.slice(1))
                   && !document.getElementById(decodeURIComponent(a.hash.slice(1))))
      .map(a => a.hash),
    textLength: document.body.innerText.length,
    formulas: formulas.length,
    unrendered: formulas.filter(m => {
      const box = m.getBoundingClientRect();
      return !(box.width > 0 && box.height > 0) || !getComputedStyle(m).display.includes('math');
    }).map(m => m.textContent).slice(0, 5),
    texLeft: texLeft.slice(0, 5),
  };
}"""


def find_chromium() -> str | None:
    """$COURSE_CHROMIUM if set, else the first Chromium or Chrome on PATH."""
    if os.environ.get("COURSE_CHROMIUM"):
        return os.environ["COURSE_CHROMIUM"] if os.access(os.environ["COURSE_CHROMIUM"], os.X_OK) else None
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``(folder, pages)``: the course site built from every notebook (tools/build_site.py)."""
    import build_site  # tools/, on pytest's pythonpath; imported here so other tests do not load it

    out = tmp_path_factory.mktemp("site")
    pages = build_site.build_site(NOTEBOOKS, out)
    return out, pages


class Page:
    """A Playwright page that records console errors, page errors and every requested URL."""

    def __init__(self, page):
        self.page, self.errors, self.requests = page, [], []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "assert") else None)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url[:100]} {r.failure}"))
        page.on("request", lambda r: self.requests.append(r.url))

    def open(self, path: Path) -> dict:
        self.errors.clear()
        self.requests.clear()
        self.page.goto(path.as_uri(), wait_until="load", timeout=PAGE_TIMEOUT_MS)
        return self.page.evaluate(PAGE_PROBE)


@pytest.fixture(scope="module")
def _chromium_page():
    """One headless Chromium page per test module; tests reach it through ``page``."""
    executable = find_chromium()
    if executable is None:
        pytest.fail("Chromium was not found ($COURSE_CHROMIUM if set, else "
                    f"{', '.join(CHROMIUM_NAMES)} on PATH). Install it with "
                    "`sudo tools/install_browser.sh` (make test does this as root), point "
                    "COURSE_CHROMIUM at one, or deselect the browser tests: pytest -m \"not browser\" "
                    "(make test MARKS=\"not browser\").",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
            yield Page(context.new_page())
        finally:
            browser.close()


@pytest.fixture
def page(request):
    """A :class:`Page` in headless Chromium, for tests marked ``@pytest.mark.browser`` only.

    Checked first, so that a test using ``page`` without the marker fails saying so, instead of
    escaping ``pytest -m "not browser"`` and failing on a machine without Chromium.
    """
    if request.node.get_closest_marker("browser") is None:
        pytest.fail(f"{request.node.nodeid} uses the `page` fixture (headless Chromium) but is not marked "
                    "@pytest.mark.browser: mark it, so that `pytest -m \"not browser\"` deselects it.",
                    pytrace=False)
    return request.getfixturevalue("_chromium_page")
