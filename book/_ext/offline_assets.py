"""Sphinx extension: serve MathJax, require.js and the Jupyter widget manager
from the site itself, and keep every page free of requests to other hosts.

Jupyter Book 1 loads these from CDNs by default, so offline readers see raw TeX
and no widgets. `./course book` installs the pinned npm packages (package.json,
package-lock.json); this extension copies the few files of them that pages
load from node_modules to ``_static/vendor/``, where ``mathjax_path`` and
``nb_ipywidgets_js`` in _config.yml point. The browser tests
(tests/browser/test_site.py) fail on any request these files make that is not
served, so a file missing from FILES shows up there as a 404.

They are deliberately not kept in a source folder named ``_static``: Jupyter
Book 1 injects every .js and .css file found there into every page, which for
MathJax would mean hundreds of scripts.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

# Glob under node_modules -> folder under _static/vendor. Only what pages load.
WIDGETS = "@jupyter-widgets/html-manager/dist"
FONTS = "output/chtml/fonts/woff-v2"
EXTENSIONS = "input/tex/extensions"
FILES = (
    # MathJax: the TeX-in, CommonHTML-out component (pages have no MathML
    # input, so not tex-mml-chtml), its fonts (fetched per glyph style a page
    # uses) and the TeX extensions its autoload fetches when a page uses, say,
    # \boldsymbol or \cancel. Not shipped: the SVG output, the speech-rule
    # engine and the accessibility explorer (4 MB, loaded only if a reader
    # turns them on in MathJax's menu; the hidden MathML that screen readers
    # use is part of the component).
    ("mathjax/es5/tex-chtml.js", "mathjax"),
    (f"mathjax/es5/{FONTS}/*.woff", f"mathjax/{FONTS}"),
    (f"mathjax/es5/{EXTENSIONS}/*.js", f"mathjax/{EXTENSIONS}"),
    ("requirejs/require.js", "."),
    # The widget manager: embed-amd.js bundles everything (base, controls,
    # output); of its icon fonts, browsers fetch only the woff2 files. The
    # bundled @jupyter-widgets/base and /controls modules derive their public
    # path from their own module names, so they look for the icon fonts in
    # @jupyter-widgets/ rather than in html-manager/dist/: they go to both.
    (f"{WIDGETS}/embed-amd.js", WIDGETS),
    (f"{WIDGETS}/*.woff2", WIDGETS),
    (f"{WIDGETS}/*.woff2", "@jupyter-widgets"),
)
# all-packages.js is for the tex-*-full components; autoload never asks for it.
SKIP = {"all-packages.js"}
# What this extension owns under _static/vendor (pydata-sphinx-theme keeps its
# fontawesome there too): removed before copying, so a rebuild into the same
# _build/html leaves no stale files from an earlier layout.
OWNED = ("mathjax", "require.js", "require-config.js", "@jupyter-widgets")
REQUIRE_CONFIG = Path(__file__).with_name("require-config.js")


def _node_modules(app: Sphinx) -> Path:
    return Path(app.confdir) / "node_modules"


def _sources(app: Sphinx, pattern: str) -> list[Path]:
    return sorted(
        path
        for path in _node_modules(app).glob(pattern)
        if path.name not in SKIP
    )


def check_assets(app: Sphinx) -> None:
    if app.builder.format != "html":
        return
    missing = [pattern for pattern, _ in FILES if not _sources(app, pattern)]
    if missing:
        raise ExtensionError(
            f"offline web assets missing from {_node_modules(app)}: {missing}. "
            "Run `./course book`, which installs them with `npm ci`."
        )


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    vendor = Path(app.outdir) / "_static" / "vendor"
    for name in OWNED:
        stale = vendor / name
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    for pattern, destination in FILES:
        target = vendor / destination
        target.mkdir(parents=True, exist_ok=True)
        for source in _sources(app, pattern):
            shutil.copy2(source, target / source.name)
    shutil.copy2(REQUIRE_CONFIG, vendor / REQUIRE_CONFIG.name)


def set_default_mode(app: Sphinx, config: Config) -> None:
    # pydata-sphinx-theme writes the template variable default_mode into every
    # page and, when it is unset, logs "Got invalid theme mode: ." as a console
    # error on a reader's first visit. "auto" (follow the reader's system) is
    # what it then falls back to anyway.
    config.html_context.setdefault("default_mode", "auto")


def drop_thebe_scripts(
    app: Sphinx,
    pagename: str,
    templatename: str,
    context: dict[str, Any],
    doctree: Any,
) -> None:
    # Jupyter Book 1 always loads sphinx-thebe, even with `launch_buttons.thebe:
    # false`, and sphinx-thebe 0.3.1 adds its inline configuration twice, so
    # every page threw "Identifier 'THEBE_JS_URL' has already been declared";
    # that configuration also names thebe on unpkg.com. With thebe off nothing
    # uses these scripts, so they are left out of the pages.
    if app.config.html_theme_options.get("launch_buttons", {}).get("thebe"):
        return
    scripts = context.get("script_files", [])
    scripts[:] = [script for script in scripts if not _is_thebe(script)]
    context["css_files"][:] = [
        css
        for css in context.get("css_files", [])
        if "sphinx-thebe" not in str(css)
    ]


def _is_thebe(script: Any) -> bool:
    body = getattr(script, "attributes", {}).get("body", "")
    return "sphinx-thebe" in str(script) or "THEBE_JS_URL" in body


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", set_default_mode)
    app.connect("builder-inited", check_assets)
    app.connect("html-page-context", drop_thebe_scripts)
    app.connect("build-finished", copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
