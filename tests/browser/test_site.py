"""Every page of the built book, loaded in a real (headless) Chromium from a local server, as a reader gets it.

Nothing may leave the machine: the site is served by an HTTP server in a thread, and every request to another host
is aborted and fails the test.

Each page is visited once, in light and in dark mode (screenshots of both are kept, see the end of the pytest run);
what the browser saw is collected into a PageVisit and the tests below check it for every page at once, naming each
page that fails. They are generic over pages, so chapters added later are checked without changes here.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "rnn-to-transformer/course"
BRANCH = "main"
# Sphinx's own pages: not chapters, so not in the navigation or the search index.
GENERATED_PAGES = {"search.html", "genindex.html", "py-modindex.html"}
ROOT_REDIRECT = "index.html"  # Jupyter Book's redirect to the root page of _toc.yml
# Console messages from upstream code that configuration cannot silence. Each entry says why it is harmless.
ALLOWED_CONSOLE_ERRORS: dict[str, str] = {}
# Unrendered TeX left in the text of a page, outside code.
RAW_TEX = re.compile(r"\\\(|\\\[|\\begin\{|\$\$|(?<![\w$])\$(?=\S)[^$\n]{1,200}(?<=\S)\$(?![\w$])")
MIN_CONTRAST = 4.5  # WCAG AA for body text
# Alt text that is a file name or a path (what Sphinx writes when a figure has no alt text), or a single token such as
# a figure's label: no description of the picture.
FILE_NAME = re.compile(r".*\.(png|jpe?g|svg|gif|webp)|\S+", re.IGNORECASE)

pytestmark = pytest.mark.slow

# Runs in the page once it has settled; returns what the checks need. Text is taken from clones with code, math and
# cell outputs removed, so that only prose is searched for raw TeX and for a word to search for.
COLLECT = """
() => {
  const article = document.querySelector("article") || document.body;
  const prose = (selector, drop) => {
    const clone = article.cloneNode(true);
    clone.querySelectorAll(drop).forEach((node) => node.remove());
    if (!selector) return clone.textContent;
    return [...clone.querySelectorAll(selector)].map((node) => node.textContent).join("\\n");
  };
  const code = "pre, code, script, style, .highlight, mjx-container, .math, .cell_output, .output";
  const hidden = "details, .dropdown, .toggle-hidden, .solution, .headerlink";
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  return {
    title: document.title,
    text: prose(null, code),
    words: prose("p, li, h1, h2, h3, h4, dt, dd, figcaption, caption", code + ", " + hidden),
    links: [...document.querySelectorAll("a[href]")].map((a) => ({href: a.href, raw: a.getAttribute("href"),
      text: a.textContent.trim(), title: a.getAttribute("title") || "", label: a.getAttribute("aria-label") || ""})),
    icons: [...document.querySelectorAll('link[rel~="icon"]')].map((link) => link.href),
    sidebar: [...document.querySelectorAll(".bd-sidebar-primary a[href]")].map((a) => a.href),
    math: [...article.querySelectorAll(".math")].map((node) => ({
      tex: node.textContent.slice(0, 80), typeset: !!node.querySelector("mjx-container")})),
    mathErrors: [...document.querySelectorAll("mjx-merror, [data-mjx-error]")].map(
      (node) => node.getAttribute("data-mjx-error") || node.textContent).concat(
      // MathJax's noundefined package shows an unknown macro as its name in red instead of failing
      [...document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]')]
        .map((node) => node.textContent).filter((text) => text.startsWith("\\\\"))
        .map((text) => `undefined macro ${text}`)),
    images: [...document.images].map((img) => ({
      src: img.currentSrc || img.src, loaded: img.complete && img.naturalWidth > 0,
      alt: (img.getAttribute("alt") || "").trim(), inArticle: !!img.closest("article"),
      caption: (img.closest("figure")?.querySelector("figcaption")?.textContent || "").trim(),
      inWidget: !!img.closest(".widget-subarea, .jupyter-widgets")})),
    codeBlocks: [...article.querySelectorAll("div.highlight")].map((block) => ({
      copy: !!block.querySelector("button.copybtn"), inCell: !!block.closest(".cell_input"),
      text: block.textContent.slice(0, 60)})),
    cells: article.querySelectorAll(".cell .cell_input").length,
    // text outputs whose longest line does not fit the page: the reader would have to scroll sideways
    wideOutputs: [...article.querySelectorAll(".cell_output pre")]
      .filter((pre) => pre.scrollWidth > pre.clientWidth + 1)
      .map((pre) => pre.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), "").slice(0, 100)),
    widgets: views.map((view) => {
      const area = view.parentElement.querySelector(".widget-subarea");
      const box = area ? area.getBoundingClientRect() : {width: 0, height: 0};
      const bars = area ? [...area.querySelectorAll(".widget-hprogress, .jupyter-widget-progress, progress")] : [];
      return {
        rendered: !!area && area.children.length > 0 && box.width > 0 && box.height > 0,
        hiddenByReader: !!view.closest("details:not([open])"),
        text: area ? area.innerText.trim().slice(0, 120) : "",
        bars: bars.map((bar) => {
          const fill = bar.querySelector(".progress-bar");
          return {width: bar.getBoundingClientRect().width,
                  fill: fill ? fill.getBoundingClientRect().width : -1};
        }),
      };
    }),
  };
}
"""

# Background and text colours as the reader sees them (the first non-transparent background up the tree).
COLOURS = """
() => {
  const background = (node) => {
    for (; node; node = node.parentElement) {
      const colour = getComputedStyle(node).backgroundColor;
      if (colour !== "rgba(0, 0, 0, 0)" && colour !== "transparent") return colour;
    }
    return getComputedStyle(document.documentElement).backgroundColor;
  };
  const pair = (node) => node ? {text: getComputedStyle(node).color, background: background(node)} : null;
  return {
    page: pair(document.querySelector("article p") || document.querySelector("article") || document.body),
    code: pair(document.querySelector("article div.highlight pre")),
    body: background(document.body),
  };
}
"""


@dataclass
class Served:
    """The site on http://127.0.0.1:<port>/ and every request the server answered, in order."""

    root: Path
    base: str
    log: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture(scope="module")
def served_site(site: Path) -> Iterator[Served]:
    served = Served(root=site, base="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            # Also called for errors (send_error), so a 404 for /favicon.ico, which the browser asks for outside any
            # page's request events, is recorded here.
            served.log.append((self.path, int(code)))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    served.base = f"http://127.0.0.1:{server.server_port}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


@dataclass
class PageVisit:
    """What the browser saw on one page."""

    path: str
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    colours: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value or "")


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site (not the theme's templates under _static/), relative to its root."""
    pages = (path.relative_to(site).as_posix() for path in site.rglob("*.html"))
    return sorted(page for page in pages if not page.startswith(("_static/", "_sources/")))


def chapter_pages(site: Path) -> list[str]:
    return [page for page in site_pages(site) if page not in GENERATED_PAGES | {ROOT_REDIRECT}]


def open_page(context: Any, served: Served, path: str) -> tuple[Any, PageVisit]:
    """Open `path` in a new tab, recording its requests, failures and errors, and wait until it has settled:
    MathJax has typeset, the widget manager has rendered every saved widget view, and the network is idle."""
    visit = PageVisit(path)
    page = context.new_page()
    page.on("request", lambda request: visit.requests.append(request.url))
    page.on("requestfailed", lambda request: visit.failed.append(f"{request.url} ({request.failure})"))
    page.on(
        "response",
        lambda response: response.status >= 400 and visit.failed.append(f"{response.url} (HTTP {response.status})"),
    )
    page.on("pageerror", lambda error: visit.errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and visit.errors.append(f"console: {message.text} at {message.location.get('url', '')}")
        ),
    )
    start = time.perf_counter()
    page.goto(served.base + path, wait_until="load")
    page.evaluate("async () => { if (window.MathJax?.startup?.promise) await MathJax.startup.promise; }")
    try:
        page.wait_for_function(
            """() => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
                   .every((view) => view.parentElement.querySelector(".widget-subarea > *"))""",
            timeout=30_000,
        )
    except Exception as error:  # reported by test_widget_views_show_their_saved_state
        visit.errors.append(f"widget views not rendered within 30 s: {error}")
    page.wait_for_load_state("networkidle")
    visit.seconds = time.perf_counter() - start
    return page, visit


def offline_context(browser: Any, served: Served, **options: Any) -> Any:
    """A browser context (fresh profile) in which any request that is not for the local server is aborted and
    recorded in `context.blocked`: offline means offline, not merely unobserved."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block", **options)
    context.blocked = []

    def only_this_site(route: Any) -> None:
        if route.request.url.startswith((served.base, "data:", "blob:")):
            route.continue_()
        else:
            context.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", only_this_site)
    return context


@pytest.fixture(scope="module")
def browser_context(browser: Any, served_site: Served) -> Iterator[Any]:
    context = offline_context(browser, served_site)
    yield context
    context.close()


@pytest.fixture(scope="module")
def visits(browser_context: Any, served_site: Served, screenshot_dir: Path) -> dict[str, PageVisit]:
    """Visit every page of the site once: collect what it shows and screenshot it in light and dark mode."""
    result = {}
    for path in site_pages(served_site.root):
        if path == ROOT_REDIRECT:
            continue
        logged = len(served_site.log)
        page, visit = open_page(browser_context, served_site, path)
        visit.facts = page.evaluate(COLLECT)
        for mode in ("light", "dark"):
            page.evaluate(
                f"() => {{ document.documentElement.dataset.theme = '{mode}'; "
                f"document.documentElement.dataset.mode = '{mode}'; }}"
            )
            page.wait_for_timeout(300)  # the theme's colour transitions
            visit.colours[mode] = page.evaluate(COLOURS)
            page.screenshot(
                animations="disabled",  # the sidebar slides in when a page opens
                path=screenshot_dir / f"{path.removesuffix('.html').replace('/', '--')}.{mode}.png",
                full_page=True,
            )
        page.close()
        # The browser asks for some files (the favicon) outside the page's request events: the server saw them.
        visit.failed += [
            f"{served_site.base}{url.lstrip('/')} (HTTP {code}, seen by the server)"
            for url, code in served_site.log[logged:]
            if code >= 400
        ]
        result[path] = visit
    return result


def check(problems: dict[str, list[str]]) -> None:
    """Fail with every problem of every page, in full."""
    report = "\n".join(f"{page}:\n    " + "\n    ".join(items) for page, items in problems.items() if items)
    if report:
        pytest.fail(report, pytrace=False)


def test_every_page_was_visited(visits: dict[str, PageVisit], served_site: Served, browser_summary: list[str]) -> None:
    pages = chapter_pages(served_site.root)
    assert pages, "the site has no pages"
    assert set(pages) <= set(visits)
    browser_summary[:] = [f"browser tests: visited {len(visits)} pages (requests, seconds to settle):"]
    browser_summary += [
        f"  {path}: {len(visit.requests)} requests, {visit.seconds:.1f} s" for path, visit in visits.items()
    ]


def test_no_request_fails_or_leaves_the_site(
    visits: dict[str, PageVisit], browser_context: Any, served_site: Served
) -> None:
    problems = {path: list(visit.failed) for path, visit in visits.items()}
    problems["requests to other hosts (aborted)"] = sorted(set(browser_context.blocked))
    for path, visit in visits.items():
        # Chromium skips its implicit /favicon.ico request when requests are intercepted, as here, so the favicon
        # is checked directly: a page names one that exists, or the site has /favicon.ico.
        icons = visit.facts["icons"] or [served_site.base + "favicon.ico"]
        for icon in icons:
            if not (served_site.root / unquote(urlsplit(icon).path).lstrip("/")).is_file():
                problems[path].append(f"favicon {icon} is not on the site")
    check(problems)


def test_no_page_errors_or_console_errors(visits: dict[str, PageVisit]) -> None:
    unexpected = {
        path: [error for error in visit.errors if not any(allowed in error for allowed in ALLOWED_CONSOLE_ERRORS)]
        for path, visit in visits.items()
    }
    check(unexpected)


def test_math_is_typeset(visits: dict[str, PageVisit]) -> None:
    problems = {}
    for path, visit in visits.items():
        facts = visit.facts
        problems[path] = [f"raw TeX in the text: {match!r}" for match in RAW_TEX.findall(facts["text"])]
        problems[path] += [f"math not typeset: {math['tex']!r}" for math in facts["math"] if not math["typeset"]]
        problems[path] += [f"MathJax error: {error!r}" for error in facts["mathErrors"]]
    check(problems)
    typeset = sum(len(visit.facts["math"]) for visit in visits.values())
    assert typeset, "no page has math: the check above checked nothing"


def test_images_load_and_figures_have_captions_and_alt_text(visits: dict[str, PageVisit]) -> None:
    problems = {}
    for path, visit in visits.items():
        images = visit.facts["images"]
        problems[path] = [f"image did not load: {image['src'][:100]}" for image in images if not image["loaded"]]
        for image in images:
            # Sphinx puts the file's path into alt when none is given: that is no description. Images drawn inside
            # a widget view (an ipywidgets explorer's plot) come from the saved widget state, where no caption can
            # be attached; their cell's caption is what describes them.
            if not image["inArticle"] or image["inWidget"]:
                continue
            if not image["caption"]:
                problems[path].append(f"figure without a caption: {image['src'][:100]}")
            if not image["alt"] or FILE_NAME.fullmatch(image["alt"]):
                problems[path].append(
                    f"figure whose alt text {image['alt']!r} does not describe it: {image['src'][:80]}"
                )
    check(problems)


@pytest.mark.parametrize("alt", ["", "../_images/abc123.png", "fig-bptt-norms", "_images/x.svg", "figure.jpeg"])
def test_a_file_name_is_no_alt_text(alt: str) -> None:
    assert not alt or FILE_NAME.fullmatch(alt)


def test_a_description_is_alt_text() -> None:
    assert not FILE_NAME.fullmatch("Two log-scale plots of gradient norm against distance.")


# Pages written before this check, with output lines still wider than the page (an error message, a table row,
# a tensor's repr): their authors wrap those lines, then take the page off this list. A listed page that no longer
# has a wide line fails too, so the list only shrinks.
def test_no_output_line_scrolls_sideways(visits: dict[str, PageVisit]) -> None:
    check(
        {
            path: [f"output line wider than the page: {line!r}" for line in visit.facts["wideOutputs"]]
            for path, visit in visits.items()
        }
    )


def test_internal_links_and_anchors_resolve(visits: dict[str, PageVisit], served_site: Served) -> None:
    ids: dict[Path, set[str]] = {}
    problems: dict[str, list[str]] = {}
    for path, visit in visits.items():
        problems[path] = []
        for link in visit.facts["links"]:
            href = link["href"]
            if not href.startswith(served_site.base):
                continue
            parts = urlsplit(href)
            target = served_site.root / unquote(parts.path).lstrip("/")
            if target.is_dir():
                target /= "index.html"
            if not target.is_file():
                problems[path].append(f"broken link {link['raw']!r} ({link['text'][:40]!r}): no {target.name}")
                continue
            if parts.fragment and target.suffix == ".html":
                if target not in ids:
                    parser = _Ids()
                    parser.feed(target.read_text())
                    ids[target] = parser.ids
                if unquote(parts.fragment) not in ids[target]:
                    problems[path].append(f"broken anchor {link['raw']!r}: no id {parts.fragment!r} on {target.name}")
    check(problems)


def test_every_page_is_reachable_from_the_navigation(visits: dict[str, PageVisit], served_site: Served) -> None:
    pages = set(chapter_pages(served_site.root))
    root = (served_site.root / ROOT_REDIRECT).read_text()
    start = re.search(r'url=([^"]+)"', root)
    assert start, "index.html does not redirect to the root page"
    start_page = start.group(1).removeprefix("./")
    seen, queue = {start_page}, deque([start_page])
    while queue:  # follow only the links of the primary sidebar (and its logo link), page by page
        for href in visits[queue.popleft()].facts["sidebar"]:
            target = urlsplit(href).path.lstrip("/")
            if target in pages and target not in seen:
                seen.add(target)
                queue.append(target)
    assert pages - seen == set(), f"not reachable from the sidebar navigation: {sorted(pages - seen)}"


def distinctive_words(visits: dict[str, PageVisit], pages: list[str]) -> dict[str, str]:
    """For each page, a word of its prose that as few other pages as possible use (and, among those, its most
    frequent one): what a reader would type to find it."""
    words = {page: Counter(re.findall(r"[a-z]{6,}", visits[page].facts["words"].lower())) for page in pages}
    spread = Counter(word for counts in words.values() for word in counts)
    return {
        page: min(counts, key=lambda word: (spread[word], -counts[word], word)) if counts else ""
        for page, counts in words.items()
    }


def test_search_finds_each_page_by_a_word_on_it(
    visits: dict[str, PageVisit], browser_context: Any, served_site: Served, browser_summary: list[str]
) -> None:
    pages = chapter_pages(served_site.root)
    problems = {}
    words = distinctive_words(visits, pages)
    browser_summary.append("browser tests: searched for " + ", ".join(f"{w!r} ({p})" for p, w in words.items()))
    for path, word in words.items():
        if not word:
            problems[path] = ["no word on the page to search for"]
            continue
        page, visit = open_page(browser_context, served_site, f"search.html?q={word}")
        page.wait_for_function(
            "() => (document.querySelector('#search-results .search-summary') || {}).textContent", timeout=30_000
        )
        found = page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.href)")
        page.close()
        found_pages = {urlsplit(href).path.lstrip("/") for href in found}
        problems[path] = (
            [f"search for {word!r} does not list it (found {sorted(found_pages)})"] * (path not in found_pages)
            + visit.errors
            + visit.failed
        )
    check(problems)


def test_every_code_cell_has_a_copy_button(visits: dict[str, PageVisit]) -> None:
    problems = {
        path: [f"no copy button on {block['text']!r}" for block in visit.facts["codeBlocks"] if not block["copy"]]
        for path, visit in visits.items()
    }
    check(problems)
    for path, visit in visits.items():  # each code cell's input is a highlighted block
        in_cells = sum(block["inCell"] for block in visit.facts["codeBlocks"])
        assert in_cells >= visit.facts["cells"], f"{path}: {visit.facts['cells']} code cells, {in_cells} blocks"


def _luminance(colour: str) -> float:
    red, green, blue = (int(value) / 255 for value in re.findall(r"[\d.]+", colour)[:3])
    linear = [value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4 for value in (red, green, blue)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(text: str, background: str) -> float:
    lighter, darker = sorted((_luminance(text), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_a_copy_button_copies_its_cells_code(browser: Any, served_site: Served, visits: dict[str, PageVisit]) -> None:
    path = next((path for path, visit in visits.items() if any(b["inCell"] for b in visit.facts["codeBlocks"])), None)
    assert path, "no page has a code cell"
    context = offline_context(browser, served_site, permissions=["clipboard-read", "clipboard-write"])
    page, _ = open_page(context, served_site, path)
    block = page.locator(".cell_input div.highlight").first
    block.hover()  # the button shows on hover
    block.locator("button.copybtn").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    code = block.locator("pre").inner_text()
    context.close()
    assert copied.strip() == code.strip()
    assert not context.blocked


def test_light_and_dark_modes_both_render_readably(visits: dict[str, PageVisit]) -> None:
    problems = {}
    for path, visit in visits.items():
        light, dark = visit.colours["light"], visit.colours["dark"]
        problems[path] = []
        if light["body"] == dark["body"]:
            problems[path].append(f"same background in light and dark mode: {light['body']}")
        if _luminance(dark["body"]) >= _luminance(light["body"]):
            problems[path].append(f"dark mode is not darker: {dark['body']} vs {light['body']}")
        for mode, colours in visit.colours.items():
            for part in ("page", "code"):
                if colours[part] and contrast(colours[part]["text"], colours[part]["background"]) < MIN_CONTRAST:
                    problems[path].append(f"{mode} mode: {part} text {colours[part]} is hard to read")
    check(problems)


def test_widget_views_show_their_saved_state(visits: dict[str, PageVisit]) -> None:
    problems = {}
    for path, visit in visits.items():
        problems[path] = []
        for widget in visit.facts["widgets"]:
            if widget["hiddenByReader"]:
                continue
            if not widget["rendered"] or (not widget["text"] and not widget["bars"]):
                problems[path].append(f"widget view not rendered: {widget}")
            for bar in widget["bars"]:  # a tqdm bar: its track is drawn and filled as far as the run got
                if bar["width"] <= 0 or bar["fill"] <= 0:
                    problems[path].append(f"progress bar not drawn: {bar} next to {widget['text']!r}")
    check(problems)
    bars = [widget for visit in visits.values() for widget in visit.facts["widgets"] if widget["bars"]]
    assert bars, "no page shows a tqdm bar (the reproducibility appendix has some)"
    assert all(re.search(r"\d+%|\d+/\d+", widget["text"]) for widget in bars), [w["text"] for w in bars]


def _source(path: str) -> Path | None:
    stem = ROOT / path.removesuffix(".html")
    return next((stem.with_suffix(suffix) for suffix in (".ipynb", ".md") if stem.with_suffix(suffix).is_file()), None)


def test_launch_and_repository_buttons_point_at_the_pages_own_file(
    visits: dict[str, PageVisit], served_site: Served
) -> None:
    github = f"https://github.com/{REPOSITORY}"
    problems = {}
    for path in chapter_pages(served_site.root):
        source = _source(path)
        hrefs = {link["href"] for link in visits[path].facts["links"]}
        problems[path] = []
        if source is None:
            problems[path].append("no .ipynb or .md source for this page in the repository")
            continue
        relative = source.relative_to(ROOT).as_posix()
        expected = {github, f"{github}/edit/{BRANCH}/{relative}"}
        if source.suffix == ".ipynb":
            expected |= {
                f"https://mybinder.org/v2/gh/{REPOSITORY}/{BRANCH}?urlpath=lab/tree/{relative}",
                f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/{relative}",
            }
        else:  # a Markdown page has nothing to launch
            problems[path] += [
                f"launch button on a Markdown page: {href}"
                for href in hrefs
                if "mybinder.org" in href or "colab.research" in href
            ]
        problems[path] += [f"missing button link {href}" for href in sorted(expected - hrefs)]
        # any other launch or repository link would point somewhere else: wrong repository, branch or file
        for href in hrefs - expected:
            if href.startswith((f"{github}/edit", f"{github}/blob", "https://mybinder.org", "https://colab.research")):
                problems[path].append(f"unexpected launch or edit link {href}")
        issues = [href for href in hrefs if href.startswith(f"{github}/issues/new")]
        if not issues or parse_qs(urlsplit(issues[0]).query).get("title") != [f"Issue on page /{path}"]:
            problems[path].append(f"issue button does not name the page: {issues}")
        download = f"{served_site.base}_sources/{relative}"
        if download not in hrefs:
            problems[path].append(f"no download link to {download}")
    check(problems)


def test_root_redirects_to_the_first_page(browser_context: Any, served_site: Served) -> None:
    page = browser_context.new_page()
    page.goto(served_site.base)
    page.wait_for_url(re.compile(r".+/[\w/-]+\.html$"))
    landed = urlsplit(page.url).path.lstrip("/")
    page.close()
    assert landed in chapter_pages(served_site.root), landed
