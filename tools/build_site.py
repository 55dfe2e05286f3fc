r"""Render the executed course to a static, offline site: an index and one page per notebook.

Usage: python tools/build_site.py [--out site] [notebooks/*.ipynb]

The notebooks are rendered as committed, with their stored outputs (nothing is executed),
by nbconvert's JupyterLab template with every script removed: the template's MathJax,
require.js and Mermaid loaders would fetch from a CDN, and nothing on these pages needs
JavaScript. Math ($…$, $$…$$, \(…\), \[…\] and \begin{…} environments in Markdown) is
typeset at build time into MathML by latex2mathml, which browsers render natively (MathML
Core); a formula it cannot typeset stops the build rather than show TeX source. Figures are
embedded as data URIs, so each page is one file that works from any folder, a USB stick or
an e-mail. Pages are written in sorted order with nothing time-dependent in them: two builds
are byte-identical.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
import unicodedata
from pathlib import Path

import jinja2
import latex2mathml.converter
import nbformat
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath, MathBlockParser, MathInlineParser
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

ROOT = Path(__file__).resolve().parents[1]
COURSE = "Gradient Flow"
GOALS_HEADING = re.compile(r"^\s*(?:#+\s*|\*\*)(?:Learning goals|In this notebook you will)\b", re.I)
LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+")

SITE_CSS = """
nav.site-nav { display: flex; justify-content: space-between; gap: 1em; padding: 0.6em 1em;
  margin: 0 0 1em; background: #f3f5f7; border: 1px solid #d8dde3; border-radius: 6px;
  font-family: system-ui, sans-serif; font-size: 14px; }
nav.site-nav a { color: #1a5fb4; text-decoration: none; }
nav.site-nav a:hover { text-decoration: underline; }
nav.site-nav .disabled { color: #9aa0a6; }
math { font-size: 1.08em; }
math[display="block"] { margin: 0.6em 0; overflow-x: auto; overflow-y: hidden; }
"""

# JupyterLab's template, minus every script (CDN loaders) and plus the navigation bar.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">{{ resources.site_css }}</style>{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}
{{ resources.site_nav }}
{%- endblock body_header -%}
{%- block body_footer -%}
{{ resources.site_nav }}
{{ super() }}
{%- endblock body_footer -%}
{#- Our own notebooks: Pygments' HTML needs no sanitising (bleach took a third of the build). -#}
{%- block input -%}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
<div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
</div>
</div>
{%- endblock input -%}
{%- block data_png scoped -%}
<div class="jp-RenderedImage jp-OutputArea-output {{ extra_class }}">
<img src="data:image/png;base64,{{ output.data['image/png'] | escape_html }}"
alt="{{ output.metadata.get('site_alt', 'figure') | escape_html }}">
</div>
{%- endblock data_png -%}
"""


# Single-backslash \( \) and \[ \] (as JupyterLab accepts them) besides nbconvert's doubled ones.
_INLINE_LATEX = re.compile(r"(?<!\\)\\{1,2}\((?P<math_inline_latex>.*?)(?<!\\)\\{1,2}\)", re.S)
_BLOCK_LATEX = re.compile(r"(?<!\\)\\{1,2}\[(?P<math_block_latex>.*?)(?<!\\)\\{1,2}\]", re.S)


class CourseInlineParser(MathInlineParser):
    SPECIFICATION = {**MathInlineParser.SPECIFICATION,
                     "block_math_latex": _BLOCK_LATEX.pattern, "inline_math_latex": _INLINE_LATEX.pattern}


class CourseBlockParser(MathBlockParser):
    SPECIFICATION = {**MathBlockParser.SPECIFICATION,
                     "multiline_math": MathBlockParser.SPECIFICATION["multiline_math"] + "|" + _BLOCK_LATEX.pattern
                     .replace("?P<math_block_latex>", "?:")}


# MathML Core (what Chromium renders) ignores mathvariant other than "normal": letters in
# \mathbb, \mathcal, \mathbf … become the Unicode mathematical alphanumerics instead.
_VARIANT_NAMES = {"double-struck": "DOUBLE-STRUCK", "script": "SCRIPT", "bold": "BOLD", "fraktur": "FRAKTUR",
                  "bold-italic": "BOLD ITALIC", "sans-serif": "SANS-SERIF", "monospace": "MONOSPACE",
                  "italic": "ITALIC", "bold-script": "BOLD SCRIPT", "bold-fraktur": "BOLD FRAKTUR"}
_GREEK = {"α": "ALPHA", "β": "BETA", "γ": "GAMMA", "δ": "DELTA", "ε": "EPSILON", "η": "ETA", "θ": "THETA",
          "λ": "LAMDA", "μ": "MU", "σ": "SIGMA", "φ": "PHI", "ω": "OMEGA", "χ": "CHI", "ψ": "PSI"}
_VARIANT = re.compile(r'<mi mathvariant="([a-z-]+)">([^<]+)</mi>')


def _styled(variant: str, text: str) -> str | None:
    style = _VARIANT_NAMES.get(variant)
    if style is None:
        return None
    out = []
    for char in html.unescape(text):
        if char.isascii() and char.isalpha():
            kind = f"{'CAPITAL' if char.isupper() else 'SMALL'} {char.upper()}"
        elif char.isascii() and char.isdigit():
            kind = f"DIGIT {unicodedata.name(char).split()[-1]}"
        elif char in _GREEK:
            kind = f"SMALL {_GREEK[char]}"
        else:
            return None
        for name in (f"MATHEMATICAL {style} {kind}", f"{style} {kind}", f"{style.split()[-1]} {kind}"):
            try:
                out.append(unicodedata.lookup(name))
                break
            except KeyError:
                continue
        else:
            return None
    return "".join(out)


def tex_to_mathml(tex: str, display: str = "inline") -> str:
    r"""A TeX formula as MathML for the page; ValueError where it cannot be typeset.

    >>> tex_to_mathml(r"\mathbb E x")
    '<math display="inline"><mrow><mi>𝔼</mi><mi>x</mi></mrow></math>'
    """
    try:
        mathml = latex2mathml.converter.convert(tex.strip(), display=display)
    except Exception as error:  # latex2mathml raises its own exception types and a few built-in ones
        raise ValueError(f"cannot typeset the formula {tex!r}: {type(error).__name__}: {error}") from error
    mathml = _VARIANT.sub(lambda m: f"<mi>{_styled(m[1], m[2])}</mi>" if _styled(m[1], m[2]) else m[0], mathml)
    mathml = mathml.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")
    leaked = re.search(r">[^<]*\\[A-Za-z]+", mathml)
    if leaked or "<merror" in mathml:
        raise ValueError(f"cannot typeset the formula {tex!r}: an unknown command would show as TeX"
                         f"{' (' + leaked[0][1:] + ')' if leaked else ''}")
    return mathml


class MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, with math typeset as MathML instead of left for MathJax."""

    def inline_math(self, body: str) -> str:
        return tex_to_mathml(body, "inline")

    def block_math(self, body: str) -> str:
        return tex_to_mathml(body, "block")

    def latex_environment(self, name: str, body: str) -> str:
        return tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")


def _markdown(renderer) -> MarkdownWithMath:
    return MarkdownWithMath(renderer=renderer, block=CourseBlockParser(), inline=CourseInlineParser(hard_wrap=False))


def markdown_to_html(source: str) -> str:
    """Markdown (with math) to HTML, the way the pages render it."""
    return _markdown(MathMLRenderer(escape=False)).render(source)


class SiteExporter(HTMLExporter):
    """HTMLExporter whose Markdown cells use :class:`MathMLRenderer`."""

    @jinja2.pass_context
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        renderer = MathMLRenderer(escape=False, attachments=cell.get("attachments", {}),
                               embed_images=self.embed_images,
                               path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                               anchor_link_text=self.anchor_link_text,
                               exclude_anchor_links=self.exclude_anchor_links)
        return _markdown(renderer).render(source)

    def from_notebook_node(self, nb, resources=None, **kw):
        # HTMLExporter.from_notebook_node without its closing BeautifulSoup pass (another third
        # of the build time), which only adds alt texts (our template writes them) and tabindexes.
        language = nb.metadata.get("language_info", {})
        lexer = language.get("pygments_lexer", language.get("name"))
        self.register_filter("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(
            notebook_metadata=self._nb_metadata, parent=self, resources=resources))
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)


def _markdown_cells(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]


def notebook_title(notebook, fallback: str) -> str:
    """The text of the notebook's first Markdown heading (without a leading "NN ·")."""
    for source in _markdown_cells(notebook):
        for line in source.splitlines():
            match = re.match(r"^#+\s+(.*\S)", line)
            if match:
                return re.sub(r"^\d+\s*[·.:-]\s*", "", match.group(1))
    return fallback


def learning_goals(notebook) -> str:
    """The Markdown list under "Learning goals" (or "In this notebook you will"); "" if none."""
    for source in _markdown_cells(notebook):
        lines = source.splitlines()
        start = next((i for i, line in enumerate(lines) if GOALS_HEADING.match(line)), None)
        if start is None:
            continue
        goals: list[str] = []
        blank = False
        for line in lines[start + 1:]:
            if not line.strip():
                blank = bool(goals)
            elif LIST_ITEM.match(line) or (goals and line.startswith((" ", "\t"))):
                goals += [""] * blank + [line]
                blank = False
            else:
                break
        return "\n".join(goals)
    return ""


def figure_count(notebook) -> int:
    """The number of PNG figures among the notebook's stored outputs."""
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))


def _label_figures(notebook, number: str) -> None:
    """Give every PNG output an alt text: which figure of which notebook, from which cell."""
    figure = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "image/png" in output.get("data", {}):
                figure += 1
                output.setdefault("metadata", {})["site_alt"] = (
                    f"Figure {figure} of notebook {number}, output of cell [{cell.execution_count}]")


def _number(path: Path) -> str:
    match = re.match(r"^(\d+)", path.stem)
    return match.group(1) if match else ""


def _nav(pages: list[dict], index: int) -> str:
    def link(position: int, arrow: str) -> str:
        if 0 <= position < len(pages):
            page = pages[position]
            text = f"{arrow} {page['number']} · {page['title']}" if arrow == "←" else \
                f"{page['number']} · {page['title']} {arrow}"
            return f'<a href="{page["href"]}" rel="{"prev" if arrow == "←" else "next"}">{html.escape(text)}</a>'
        return f'<span class="disabled">{arrow}</span>'

    return (f'<nav class="site-nav">{link(index - 1, "←")}'
            f'<a href="index.html" rel="index">{html.escape(COURSE)}: syllabus</a>{link(index + 1, "→")}</nav>')


def _index_html(pages: list[dict]) -> str:
    rows = []
    for page in pages:
        goals = markdown_to_html(page["goals"]) if page["goals"] else "<p>—</p>"
        rows.append(f'<tr><td class="num">{html.escape(page["number"])}</td>'
                    f'<td><a href="{page["href"]}">{html.escape(page["title"])}</a></td>'
                    f'<td class="goals">{goals}</td><td class="num">{page["figures"]}</td></tr>')
    figures = sum(page["figures"] for page in pages)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(COURSE)}: syllabus</title>
<style type="text/css">
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
  color: #1f2328; line-height: 1.45; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #d8dde3; padding: 0.5em; vertical-align: top; text-align: left; }}
th {{ background: #f3f5f7; }}
td.num {{ text-align: right; white-space: nowrap; }}
td.goals ol, td.goals ul {{ margin: 0; padding-left: 1.3em; }}
td.goals p {{ margin: 0; }}
a {{ color: #1a5fb4; }}
code {{ font-size: 0.92em; }}
{SITE_CSS}
</style>
</head>
<body>
<h1>{html.escape(COURSE)}</h1>
<p>A hands-on course on vanishing and exploding gradients: {len(pages)} notebooks,
{figures} figures, rendered with their stored outputs.</p>
<table>
<thead><tr><th>#</th><th>notebook</th><th>learning goals</th><th>figures</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body>
</html>
"""


def build_site(notebooks, out_dir) -> list[dict]:
    """Write ``out_dir/index.html`` and one page per notebook; return the pages' summaries.

    Each summary has ``path`` (the notebook), ``href`` (its page), ``number``, ``title``,
    ``goals`` (Markdown) and ``figures`` (its PNG outputs). Pages of notebooks no longer
    given (``NN_*.html`` from an earlier build) are removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = sorted({Path(p) for p in notebooks}, key=lambda p: p.name)
    pages = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        pages.append({"path": path, "notebook": notebook, "href": f"{path.stem}.html",
                      "number": _number(path), "title": notebook_title(notebook, path.stem),
                      "goals": learning_goals(notebook), "figures": figure_count(notebook)})

    exporter = SiteExporter(template_name="lab", template_file="site.html.j2",
                            extra_loaders=[jinja2.DictLoader({"site.html.j2": PAGE_TEMPLATE})])
    for position, page in enumerate(pages):
        resources = {"metadata": {"name": f"{page['number']} · {page['title']}".strip(" ·"),
                                  "path": str(page["path"].parent)},
                     "site_nav": _nav(pages, position), "site_css": SITE_CSS}
        notebook = page.pop("notebook")
        _label_figures(notebook, page["number"])
        try:
            body, _ = exporter.from_notebook_node(notebook, resources=resources)
        except ValueError as error:
            raise ValueError(f"{page['path'].name}: {error}") from error
        _write(out_dir / page["href"], body)
    _write(out_dir / "index.html", _index_html(pages))

    written = {page["href"] for page in pages}
    for stale in out_dir.glob("[0-9]*_*.html"):
        if stale.name not in written:
            stale.unlink()
    return pages


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="site", help="output folder (default: site)")
    parser.add_argument("notebooks", nargs="*", help="notebooks to render (default: notebooks/*.ipynb)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        print("build_site: no notebooks given or found in notebooks/", file=sys.stderr)
        return 2
    start = time.perf_counter()
    pages = build_site(notebooks, args.out)
    figures = sum(page["figures"] for page in pages)
    print(f"build_site: {len(pages)} pages, {figures} figures in {time.perf_counter() - start:.1f} s; "
          f"open {Path(args.out) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
