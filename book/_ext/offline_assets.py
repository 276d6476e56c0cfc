"""Sphinx extension: serve MathJax, require.js and the Jupyter widget manager
from the site itself.

Jupyter Book 1 loads these from CDNs by default, so offline readers see raw TeX
and no widgets. `./course book` installs the pinned npm packages (package.json,
package-lock.json); this extension copies them from node_modules to
``_static/vendor/``, where ``mathjax_path`` and ``nb_ipywidgets_js`` in
_config.yml point.

They are deliberately not kept in a source folder named ``_static``: Jupyter
Book 1 injects every .js and .css file found there into every page, which for
MathJax would mean hundreds of scripts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

# destination under _static/vendor -> source under node_modules. The widget
# manager keeps its npm path because require-config.js resolves module names
# there (see that file).
ASSETS = {
    "mathjax": "mathjax/es5",
    "require.js": "requirejs/require.js",
    "@jupyter-widgets/html-manager/dist": "@jupyter-widgets/html-manager/dist",
}
REQUIRE_CONFIG = Path(__file__).with_name("require-config.js")


def _node_modules(app: Sphinx) -> Path:
    return Path(app.confdir) / "node_modules"


def check_assets(app: Sphinx) -> None:
    missing = [
        source
        for source in ASSETS.values()
        if not (_node_modules(app) / source).exists()
    ]
    if missing and app.builder.format == "html":
        raise ExtensionError(
            f"offline web assets missing from {_node_modules(app)}: {missing}. "
            "Run `./course book`, which installs them with `npm ci`."
        )


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    vendor = Path(app.outdir) / "_static" / "vendor"
    for destination, source in ASSETS.items():
        origin, target = _node_modules(app) / source, vendor / destination
        if origin.is_dir():
            shutil.copytree(
                origin,
                target,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("*.map"),
            )
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    shutil.copy2(REQUIRE_CONFIG, vendor / REQUIRE_CONFIG.name)
    _copy_widget_fonts(vendor / "@jupyter-widgets")


def _copy_widget_fonts(scope: Path) -> None:
    # The bundled @jupyter-widgets/base and /controls modules derive their
    # public path from their own module names, so they look for the icon
    # fonts in @jupyter-widgets/ rather than in html-manager/dist/.
    for font in (scope / "html-manager" / "dist").iterdir():
        if font.suffix in {".woff2", ".woff", ".ttf", ".eot", ".svg"}:
            shutil.copy2(font, scope / font.name)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", check_assets)
    app.connect("build-finished", copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
