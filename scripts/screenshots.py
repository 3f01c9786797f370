"""Screenshots of every page of the master, light and dark: ``python -m scripts.screenshots``.

Starts a local grid as ``make up`` does (2 workers, an SQLite registry in a temporary
folder, the Streamlit master on a free port, a UI password so the login page exists),
drives headless Chromium (Debian's ``chromium``, ``make browser``) through the pages as a
person would (sign in, classify examples/tickets.csv, ping the workers, train a text head),
and saves ``docs/screenshots/<page>-<light|dark>.png`` at 1280x800. The theme follows the
browser's colour scheme (``.streamlit/config.toml`` defines both), so one session is
photographed twice by switching the emulated scheme.

Exit codes: 0 all taken, 1 a step failed (the message says which), 2 no Chromium.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from nexus_common.cli import new_app, run_app

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
SCHEMES = ("light", "dark")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]


def chromium() -> str | None:
    """Debian's chromium, else Google Chrome, if installed."""
    return shutil.which("chromium") or shutil.which("google-chrome")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settle(page: Any, ms: int = 900) -> None:
    """Let Streamlit finish drawing (charts fade in) before a picture; not a sync point."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(ms)


def _top(page: Any, text: str) -> Callable[[], None]:
    """Scroll so that ``text`` is at the top of the window."""
    return lambda: page.get_by_text(text).first.evaluate(
        "e => e.scrollIntoView({block: 'start'})")


def _both(page: Any, name: str, out: Path, before: Callable[[], None] | None = None) -> None:
    """``name-light.png`` and ``name-dark.png`` of what the page shows now."""
    page.mouse.move(VIEWPORT["width"] - 2, VIEWPORT["height"] - 2)  # no hover tooltip
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        if before is not None:
            before()
        _settle(page)
        path = out / f"{name}-{scheme}.png"
        page.screenshot(path=str(path))
        logger.info("saved %s (%d KiB)", path, path.stat().st_size // 1024)
    page.emulate_media(color_scheme="light")


def _nav(page: Any, title: str) -> None:
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=title if title != "Run a task" else "Run a task").first \
        .wait_for(timeout=60_000)


def take(url: str, password: str, out: Path, exe: str) -> None:
    """Walk the pages at ``url`` and save the screenshots under ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_label("Password", exact=True).wait_for()
            _both(page, "login", out)
            page.get_by_label("Password", exact=True).fill(password)
            page.get_by_role("button", name="Sign in", exact=True).click()

            command = page.get_by_label("What should the grid do?", exact=True)
            command.wait_for()
            command.fill("classify as billing / bug / feature")
            page.locator("input[type=file]").first.set_input_files(
                str(REPO / "examples" / "tickets.csv"))
            page.get_by_text("tickets.csv: 40 rows").wait_for()
            page.get_by_role("button", name="Plan", exact=True).click()
            page.get_by_role("button", name="Run", exact=True).wait_for()
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Results (40 rows)").wait_for()
            _both(page, "run", out, _top(page, "Last run"))

            _nav(page, "Workers")
            page.get_by_role("button", name="Ping all").click()
            page.get_by_text("Pinged 2 workers").wait_for()
            _both(page, "workers", out)

            _nav(page, "History")
            _both(page, "history", out)

            _nav(page, "Training")
            page.get_by_text("tickets_labelled.csv").first.click()
            rounds = page.get_by_label("Rounds", exact=True)
            rounds.fill("4")
            rounds.press("Enter")
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_text("Last training run").wait_for(timeout=300_000)
            _both(page, "training", out, _top(page, "Last training run"))
        finally:
            browser.close()


app = new_app("Take screenshots of every page, light and dark, from a local grid.")
app.info.no_args_is_help = False


@app.command()
def screenshots(out: Annotated[Path, typer.Option(help="where the PNGs go")] = OUT) -> None:
    """Start a grid, take the screenshots, stop the grid."""
    code = _take(out)
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m scripts.screenshots``; returns the exit code."""
    return run_app(app, argv, prog_name="python -m scripts.screenshots")


def _take(out: Path) -> int:
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    exe = chromium()
    if exe is None:
        logger.error("no chromium: run `make browser` (apt-get install chromium)")
        return 2
    from scripts.grid import running_grid

    password = secrets.token_urlsafe(18)
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "NADG_UI_PASSWORD_HASH"):
        os.environ.pop(name, None)
    os.environ["NADG_UI_PASSWORD"] = password  # the grid's master inherits it: a login page
    with tempfile.TemporaryDirectory(prefix="nadg-shots-") as tmp:
        try:
            with running_grid(2, registry=Path(tmp) / "registry.db", ui=True,
                              ui_port=_free_port(), watchdog=False) as grid:
                if grid.ui_url is None:
                    raise RuntimeError("the grid started without its master UI")
                take(grid.ui_url, password, out, exe)
        except Exception:  # the step that failed and why, in the log; exit 1
            logger.exception("screenshots failed")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
