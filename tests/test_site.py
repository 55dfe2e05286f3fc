"""`make html`: the course site builds byte-stably, offline, and every page works in Chromium.

The browser tests open every page of a freshly built site in headless Chromium
(tools/headless.py, the DevTools protocol over a pipe) and check that it loads without a
JavaScript exception or console error, shows every figure its notebook stores, links only
to pages that exist, and requests nothing but files. Without Chromium they FAIL, unless
COURSE_SKIP_BROWSER=1 says to skip them (`make test` installs Chromium:
tools/install_browser.sh).
"""

import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import build_site  # noqa: E402
import headless  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGE_TIMEOUT = 20.0

# What the browser measures on a page: images (and how many are decoded), links, broken anchors.
PAGE_PROBE = """(() => {
  const images = [...document.images];
  const here = location.href.split('#')[0];
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
  };
})()"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    pages = build_site.build_site(NOTEBOOKS, out)
    return out, pages


@pytest.fixture(scope="module")
def page():
    executable = headless.find_chromium()
    if executable is None:
        if os.environ.get("COURSE_SKIP_BROWSER") == "1":
            pytest.skip("COURSE_SKIP_BROWSER=1: the browser test is skipped on request")
        pytest.fail("Chromium was not found ($COURSE_CHROMIUM if set, else "
                    f"{', '.join(headless.CANDIDATES)} on PATH). Install it with "
                    "`sudo tools/install_browser.sh` (make test does this as root), point "
                    "COURSE_CHROMIUM at one, or set COURSE_SKIP_BROWSER=1 to skip this test.",
                    pytrace=False)
    browser = headless.Browser.launch(executable, timeout=PAGE_TIMEOUT)
    try:
        yield browser.new_page(width=1280, height=900)
    finally:
        browser.close()


def _open(page, path: Path) -> dict:
    page.navigate(path.as_uri(), timeout=PAGE_TIMEOUT)
    page.settle(0.1)
    return page.evaluate(PAGE_PROBE)


# --- the build, without a browser ------------------------------------------------------

def test_there_are_notebooks_to_render():
    assert len(NOTEBOOKS) >= 13


def test_build_is_byte_identical_twice(site, tmp_path):
    first, _ = site
    build_site.build_site(NOTEBOOKS, tmp_path)
    names = sorted(p.name for p in first.iterdir() if p.is_file())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_every_notebook_has_a_page_and_a_syllabus_row(site):
    out, pages = site
    assert [p["href"] for p in pages] == [f"{nb.stem}.html" for nb in NOTEBOOKS]
    index = (out / "index.html").read_text(encoding="utf-8")
    for summary in pages:
        assert (out / summary["href"]).is_file()
        assert f'href="{summary["href"]}"' in index
        assert summary["title"] and summary["figures"] >= 1, summary
    assert sum(bool(p["goals"]) for p in pages) == len(pages), "a notebook's learning goals were not found"


def test_pages_load_nothing_from_the_network(site):
    out, _ = site
    for path in sorted(out.glob("*.html")):
        text = path.read_text(encoding="utf-8")
        assert "<script" not in text, f"{path.name} has a script (the CDN loaders must be gone)"
        resources = (re.findall(r'\ssrc="([^"]*)"', text) + re.findall(r'<link[^>]*href="([^"]*)"', text)
                     + re.findall(r"url\(\s*['\"]?([^'\")]*)", text) + re.findall(r"@import\s+['\"]([^'\"]*)", text))
        for url in resources:
            assert urlsplit(url).scheme in ("", "data"), f"{path.name} loads {url[:80]}"


def test_title_goals_and_figures_of_a_small_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 42 · A test notebook\n\nIntro.\n\n## Learning goals\n\n"
                                      "1. Know $x^2$.\n   Still the first goal.\n2. Second goal.\n\nAfter."),
        nbformat.v4.new_code_cell("plot()", execution_count=1, outputs=[
            nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
            nbformat.v4.new_output("stream", name="stdout", text="✓ done\n")]),
    ]
    path = tmp_path / "42_test.ipynb"
    nbformat.write(nb, path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "41_gone.html").write_text("stale")
    [summary] = build_site.build_site([path], tmp_path / "out")
    assert summary["number"] == "42" and summary["title"] == "A test notebook" and summary["figures"] == 1
    assert summary["goals"] == "1. Know $x^2$.\n   Still the first goal.\n2. Second goal."
    assert not (tmp_path / "out" / "41_gone.html").exists(), "a stale page was left behind"
    text = (tmp_path / "out" / "42_test.html").read_text(encoding="utf-8")
    assert f'src="data:image/png;base64,{png}"' in text
    assert 'alt="Figure 1 of notebook 42, output of cell [1]"' in text
    assert '<code class="tex">$x^2$</code>' in text
    assert 'href="index.html"' in text


def test_goals_fall_back_to_in_this_notebook_you_will():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 00 · Hi\n\n**In this notebook you will**\n1. run;\n2. read.\n\nMore.")]
    assert build_site.learning_goals(nb) == "1. run;\n2. read."
    assert build_site.learning_goals(nbformat.v4.new_notebook()) == ""
    assert build_site.notebook_title(nbformat.v4.new_notebook(), "fallback") == "fallback"


def test_cli_builds_into_the_given_folder(tmp_path, capsys):
    assert build_site.main(["--out", str(tmp_path), str(NOTEBOOKS[0])]) == 0
    assert "1 pages" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["index.html", f"{NOTEBOOKS[0].stem}.html"])


# --- in the browser --------------------------------------------------------------------

def _check_loaded(page, path: Path, probe: dict) -> None:
    assert page.problems() == [], f"{path.name}: errors in the browser"
    foreign = [url for url in page.requested_urls() if urlsplit(url).scheme not in ("file", "data")]
    assert foreign == [], f"{path.name} requested non-file URLs"
    assert probe["decoded"] == probe["images"], (
        f"{path.name}: only {probe['decoded']} of {probe['images']} images shown")
    assert probe["brokenAnchors"] == [], f"{path.name}: links to missing anchors"
    for link in probe["links"]:
        parts = urlsplit(link)
        if parts.scheme == "file":
            assert Path(unquote(parts.path)).is_file(), f"{path.name} links to a missing page {link}"


def test_index_loads_and_links_every_page(site, page):
    out, pages = site
    probe = _open(page, out / "index.html")
    _check_loaded(page, out / "index.html", probe)
    linked = {Path(unquote(urlsplit(link).path)).name for link in probe["links"]}
    assert {summary["href"] for summary in pages} <= linked
    page.screenshot(out / "screenshot_index.png")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_page_loads_and_shows_every_figure(site, page, notebook):
    out, pages = site
    position = [summary["path"] for summary in pages].index(notebook)
    summary = pages[position]
    probe = _open(page, out / summary["href"])
    _check_loaded(page, out / summary["href"], probe)
    assert summary["figures"] >= 1
    assert probe["outputImages"] == summary["figures"] == probe["decoded"], (
        f"{summary['href']}: {probe['decoded']} figures shown, the notebook stores {summary['figures']}")
    assert summary["title"] in probe["title"] and probe["textLength"] > 1000
    linked = {Path(unquote(urlsplit(link).path)).name for link in probe["links"] if link.startswith("file:")}
    neighbours = {pages[i]["href"] for i in (position - 1, position + 1) if 0 <= i < len(pages)}
    assert {"index.html"} | neighbours <= linked, f"{summary['href']}: navigation links missing"
    if position == 2:
        page.screenshot(out / f"screenshot_{notebook.stem}.png")


def test_screenshots_were_taken(site, page):
    out, _ = site
    shots = sorted(out.glob("screenshot_*.png"))
    assert len(shots) == 2, shots
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000, shot
