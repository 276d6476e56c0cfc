"""Build the whole book as `./course book` does (from the executions nbval made in this run, see the `site` fixture)
and check what a reader gets: every page, executed outputs, the execution-time table, and math and widgets that work
offline (no script or stylesheet from another host)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.course_plugin import read_runs, runs_folder

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL_ASSET = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]+\"[^>]*>")

pytestmark = pytest.mark.slow


def page(site: Path, name: str) -> str:
    return (site / f"{name}.html").read_text()


def test_every_toc_page_is_built(site: Path, toc_pages: list[str]) -> None:
    for name in toc_pages:
        assert (site / f"{name}.html").is_file(), name


def test_no_page_loads_scripts_or_styles_from_another_host(site: Path) -> None:
    for html in site.rglob("*.html"):
        external = EXTERNAL_ASSET.findall(html.read_text())
        assert not external, f"{html.relative_to(site)} loads {external[:3]}"


def test_math_is_rendered_by_the_sites_own_mathjax(site: Path) -> None:
    data_page = page(site, "book/appendix/data")
    assert "_static/vendor/mathjax/tex-chtml.js" in data_page
    assert r"\mathcal{U}" in data_page  # the TeX is on the page, for MathJax to typeset
    mathjax = site / "_static/vendor/mathjax"
    assert (mathjax / "tex-chtml.js").is_file()
    assert any((mathjax / "output/chtml/fonts/woff-v2").glob("*.woff"))
    assert (mathjax / "input/tex/extensions/boldsymbol.js").is_file()  # autoloaded when a page uses \boldsymbol


def test_progress_bars_are_saved_as_widgets_rendered_by_the_sites_own_manager(site: Path) -> None:
    html = page(site, "book/appendix/reproducibility")
    assert "application/vnd.jupyter.widget-state+json" in html
    assert "_static/vendor/require.js" in html
    assert "_static/vendor/require-config.js" in html
    manager = site / "_static/vendor/@jupyter-widgets/html-manager/dist"
    assert f"{manager.relative_to(site)}/embed-amd.js" in html
    fonts = {font.name for font in manager.glob("*.woff2")}
    assert fonts, "the widget manager's icon fonts are missing"
    # ... and also where the bundled base and controls modules look for them
    assert fonts <= {font.name for font in manager.parent.parent.glob("*.woff2")}


def test_site_ships_only_the_vendor_files_pages_load(site: Path) -> None:
    vendor = site / "_static/vendor"
    shipped = {path.relative_to(vendor).as_posix() for path in vendor.rglob("*") if path.is_file()}
    unused = {"mathjax/tex-mml-chtml.js", "mathjax/input/tex/extensions/all-packages.js"}
    unused |= {f"@jupyter-widgets/html-manager/dist/{name}" for name in ("embed.js", "libembed-amd.js")}
    assert not unused & shipped
    assert not {name for name in shipped if name.startswith(("mathjax/sre/", "mathjax/a11y/", "mathjax/output/svg"))}
    assert not {name for name in shipped if name.startswith("@jupyter-widgets/") and name.endswith((".eot", ".ttf"))}
    size = sum(path.stat().st_size for path in vendor.rglob("*") if path.is_file())
    assert size < 8_000_000, f"_static/vendor holds {size / 1e6:.1f} MB"


def test_no_page_configures_thebe_from_a_cdn(site: Path) -> None:
    # thebe is off (_config.yml), so book/_ext/offline_assets.py leaves sphinx-thebe's scripts out of every page
    for html in site.rglob("*.html"):
        assert "THEBE_JS_URL" not in html.read_text(), html.relative_to(site)


def test_notebooks_were_executed_and_show_their_figures(site: Path) -> None:
    html = page(site, "book/appendix/data")
    assert "106 articles" in html
    assert "licence: CC BY-SA 4.0" in html
    assert len(re.findall(r"<img [^>]*src=\"[^\"]+\.png\"", html)) >= 3


def test_execution_times_table_lists_every_notebook(site: Path, toc_pages: list[str]) -> None:
    html = page(site, "book/appendix/reproducibility")
    for name in toc_pages:
        if (ROOT / f"{name}.ipynb").exists():
            assert name.replace("book/", "", 1) in html or name in html, name
    assert "exec-table" in html or "Run Time" in html or "Runtime" in html


def test_launch_and_repository_buttons(site: Path) -> None:
    html = page(site, "book/appendix/data")
    for expected in ("mybinder.org", "colab.research.google.com", "github.com/rnn-to-transformer/course"):
        assert expected in html, expected


def test_the_site_shows_the_executions_nbval_made_in_this_run(site: Path, request: pytest.FixtureRequest) -> None:
    executions = site.parent.parent / "executions.json"
    if not executions.exists():
        pytest.skip("COURSE_TEST_SITE names a site built elsewhere, not from this run's executions")
    built = json.loads(executions.read_text())
    runs = read_runs(runs_folder(request.config)).values()
    reusable = {run.notebook for run in runs if run.reusable and run.notebook.startswith("book/")}
    assert set(built["from_nbval"]) == reusable
    assert not reusable & set(built["by_the_build"]), "the build executed again what nbval had executed"
