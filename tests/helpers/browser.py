"""Headless Chromium from the system packages, driven by Playwright (never a downloaded
browser: ``playwright install`` is not used). Each page collects its console errors and
page errors, and every request that would leave the machine is refused and recorded, so a
test proves the pages work offline."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, Route, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_missing() -> str | None:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return ("the browser tests need Chromium from the system packages "
                "(apt-get install chromium; `make system-deps` does it)")
    return None


def chromium_path() -> str:
    return str(CHROMIUM) if CHROMIUM.exists() else str(shutil.which("chromium"))


def require_chromium() -> None:
    reason = chromium_missing()
    if reason is not None:
        pytest.skip(reason)


@dataclass
class Watched:
    """What a browser context saw go wrong."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def clean(self) -> bool:
        return not (self.console_errors or self.page_errors or self.blocked)


@contextlib.asynccontextmanager
async def browser_context() -> AsyncIterator[tuple[BrowserContext, Watched]]:
    """(a Playwright BrowserContext, its Watched) on the system's Chromium."""
    require_chromium()
    executable = chromium_path()
    watched = Watched()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=ARGS,
                                           headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})

            async def guard(route: Route) -> None:
                host = urlsplit(route.request.url).hostname or ""
                if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
                    await route.continue_()
                else:
                    watched.blocked.append(route.request.url)
                    await route.abort()

            await context.route("**/*", guard)

            def on_page(page: Page) -> None:
                page.on("console", lambda m: watched.console_errors.append(m.text)
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: watched.page_errors.append(str(e)))

            context.on("page", on_page)
            yield context, watched
            await context.close()
        finally:
            await browser.close()


async def screenshot(page: Page, name: str) -> Path:
    """Keep the page's picture for CI (``artifacts/screenshots/``, ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
