"""`make html`: the course site builds byte-stably, offline, and every page works in Chromium.

The browser tests open every page of a freshly built site in headless Chromium, driven by
Playwright (the system's Chromium, through ``executable_path``: Playwright downloads no
browser of its own), and check that it loads without a JavaScript exception or console
error, shows every figure its notebook stores, typesets every formula (MathML with a
non-zero rendered size, and no TeX source left in the prose), links only to pages that
exist, requests nothing but files, and draws Chinese glyphs (not the empty boxes of a
missing font). They are marked `browser`: without Chromium they FAIL, unless deselected with
`pytest -m "not browser"` (`make test` installs Chromium and a CJK font: tools/install_browser.sh).
The fixtures ``site`` (the built site) and ``page`` (a Chromium page) live in tests/conftest.py.
"""

import html
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import build_site
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Chinese glyphs are drawn when two different characters give different pixels: a missing
# font draws the same empty box (tofu) for both. Measured in the font the page uses there.
CJK_PROBE = r"""(element) => {
  const font = getComputedStyle(element).font;
  const pixels = (text) => {
    const canvas = document.createElement('canvas');
    canvas.width = 64; canvas.height = 64;
    const context = canvas.getContext('2d');
    context.font = font.replace(/\d+(\.\d+)?px/, '40px');
    context.fillStyle = '#000';
    context.textBaseline = 'top';
    context.fillText(text, 4, 8);
    return context.getImageData(0, 0, 64, 64).data.filter((_, i) => i % 4 === 3);
  };
  const first = pixels('梯'), second = pixels('度');
  return {
    text: element.textContent,
    inked: first.filter(a => a > 0).length,
    differing: first.filter((a, i) => a !== second[i]).length,
    width: element.getBoundingClientRect().width,
  };
}"""


def _open(page, path: Path) -> dict:
    return page.open(path)


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
    assert '<code class="tex">' not in text
    assert '<math display="inline"><mrow><msup><mi>x</mi><mn>2</mn></msup></mrow></math>' in text
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
    assert page.errors == [], f"{path.name}: errors in the browser"
    foreign = [url for url in page.requests if urlsplit(url).scheme not in ("file", "data")]
    assert foreign == [], f"{path.name} requested non-file URLs"
    assert probe["decoded"] == probe["images"], (
        f"{path.name}: only {probe['decoded']} of {probe['images']} images shown")
    assert probe["brokenAnchors"] == [], f"{path.name}: links to missing anchors"
    for link in probe["links"]:
        parts = urlsplit(link)
        if parts.scheme == "file":
            assert Path(unquote(parts.path)).is_file(), f"{path.name} links to a missing page {link}"
    assert probe["texLeft"] == [], f"{path.name}: TeX source shown in the prose"
    assert probe["unrendered"] == [], f"{path.name}: formulas not rendered as MathML (no size or no math layout)"
    assert probe["formulas"] == path.read_text(encoding="utf-8").count("<math "), path.name


@pytest.mark.browser
def test_index_loads_and_links_every_page(site, page):
    out, pages = site
    probe = _open(page, out / "index.html")
    _check_loaded(page, out / "index.html", probe)
    linked = {Path(unquote(urlsplit(link).path)).name for link in probe["links"]}
    assert {summary["href"] for summary in pages} <= linked
    assert probe["formulas"] >= 1, "the syllabus shows the learning goals' formulas"
    page.page.screenshot(path=out / "screenshot_index.png")


@pytest.mark.browser
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_page_loads_and_shows_every_figure_and_formula(site, page, notebook):
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
        page.page.screenshot(path=out / f"screenshot_{notebook.stem}.png")
        page.page.locator("math[display=block]").first.scroll_into_view_if_needed()
        page.page.screenshot(path=out / f"screenshot_{notebook.stem}_math.png")


@pytest.mark.browser
def test_a_formula_is_typeset_not_printed(site, page):
    """A fraction is laid out on two levels: taller than one line of its own text."""
    out, _ = site
    page.open(out / "02_vanishing_exploding.html")
    sizes = page.page.evaluate("""() => [...document.querySelectorAll('math[display=block] mfrac')].map(f => {
        const box = f.getBoundingClientRect(), line = parseFloat(getComputedStyle(f).fontSize);
        return box.height / line; })""")
    assert sizes and min(sizes) > 1.4, sizes


@pytest.mark.browser
def test_chinese_glyphs_are_drawn(site, page):
    out, _ = site
    welcome = next(summary for summary in site[1] if summary["number"] == "00")
    page.open(out / welcome["href"])
    cell = page.page.locator("td", has_text=re.compile("[\u4e00-\u9fff]")).first
    cell.scroll_into_view_if_needed()
    probe = cell.evaluate(CJK_PROBE)
    assert re.search("[\u4e00-\u9fff]", probe["text"]) and probe["width"] > 0, probe
    assert probe["inked"] > 50, f"no ink for a Chinese character: {probe}"
    assert probe["differing"] > 50, (f"two Chinese characters draw the same box: no CJK font ({probe}); "
                                     "install one (tools/install_browser.sh adds fonts-wqy-microhei)")
    page.page.locator("table", has=cell).first.screenshot(path=out / "screenshot_glossary.png")


@pytest.mark.browser
def test_screenshots_were_taken(site, page):
    out, _ = site
    shots = sorted(out.glob("screenshot_*.png"))
    assert len(shots) == 4, shots
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, shot


# --- math, without a browser -----------------------------------------------------------

@pytest.mark.parametrize("source", [r"a $x^2$ b", r"a \(x^2\) b", r"a \\(x^2\\) b"])
def test_inline_math_in_every_notation_is_typeset(source):
    assert build_site.markdown_to_html(source) == (
        '<p>a <math display="inline"><mrow><msup><mi>x</mi><mn>2</mn></msup></mrow></math> b</p>\n')


@pytest.mark.parametrize("source", ["$$\\frac{1}{2}$$", "\\[\\frac{1}{2}\\]",
                                    "\\begin{equation}\\frac{1}{2}\\end{equation}"])
def test_display_math_is_typeset_as_a_block(source):
    text = build_site.markdown_to_html(source)
    assert '<math display="block">' in text and "<mfrac><mrow><mn>1</mn></mrow><mrow><mn>2</mn>" in text
    assert "\\" not in text


def test_code_keeps_its_dollars_and_backslashes():
    text = build_site.markdown_to_html(
        "Run `echo $HOME $PATH` and\n\n```python\nlabel = r\"$\\sigma_w$\"\n```\n\ncost \\$5")
    assert "<code>echo $HOME $PATH</code>" in text
    assert "$\\sigma_w$" in text and "<math" not in text
    assert "cost $5" in text


def test_blackboard_and_calligraphic_letters_become_unicode_letters():
    # MathML Core renders no mathvariant but "normal": the letter itself must carry the style.
    for tex in (r"\mathbb E \mathcal N \mathbb R", r"\mathbb{E} \mathcal{N} \mathbb{R}"):
        assert html.unescape(build_site.tex_to_mathml(tex)) == (
            '<math display="inline"><mrow><mi>𝔼</mi><mi>𝒩</mi><mi>ℝ</mi></mrow></math>'), tex


def test_a_formula_that_cannot_be_typeset_stops_the_build(tmp_path):
    with pytest.raises(ValueError, match=r"\\undefinedmacro"):
        build_site.tex_to_mathml(r"x + \undefinedmacro{y}")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 43 · Broken\n\n$\\undefinedmacro$")]
    nbformat.write(nb, tmp_path / "43_broken.ipynb")
    with pytest.raises(ValueError, match="43_broken.ipynb"):
        build_site.build_site([tmp_path / "43_broken.ipynb"], tmp_path / "out")
