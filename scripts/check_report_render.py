"""
Render a faceforget report.html in headless chromium: the DOM must hold its tables; take screenshots.

Usage: python scripts/check_report_render.py run/report.html [--screenshot shot.png] [--min-tables 5]
The DOM must open with the verdict section; besides the 1280x2400 screenshot, a 1280x800 one shows the
first screen (`<shot>_first_screen.png`), where the verdict table must be.
Exits 0 when both checks pass, 1 when the render fails a check, 2 when chromium or the report is missing.
Needs Debian's chromium (`apt-get install -y chromium`); not part of CI.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
SECTIONS = ("verdict", "summary", "split", "run", "metrics", "audits", "figures", "glossary", "timings")
FIRST_SCREEN, FULL_PAGE = "1280,800", "1280,2400"


class RenderError(Exception):
    """The report did not render as expected."""


def chromium(args: list[str], binary: str, timeout: float) -> subprocess.CompletedProcess:
    """Run chromium with the fixed headless flags and a throw-away profile."""
    with tempfile.TemporaryDirectory(prefix="ff-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RenderError(f"chromium did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        raise RenderError(f"chromium exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return done


def check_dom(url: str, binary: str, min_tables: int, timeout: float) -> str:
    """The rendered DOM; raises RenderError unless it has the report's sections and enough tables."""
    dom = chromium(["--dump-dom", url], binary, timeout).stdout
    tables = len(re.findall(r"<table\b", dom))
    if tables < min_tables:
        raise RenderError(f"the DOM has {tables} tables, expected at least {min_tables}")
    missing = [s for s in SECTIONS if f'id="{s}"' not in dom]
    if missing:
        raise RenderError(f"the DOM lacks the sections {missing}")
    first = re.search(r'<section id="([^"]+)"', dom)
    if first is None or first.group(1) != "verdict":
        raise RenderError(f"the first section is {first and first.group(1)!r}, not the verdict")
    images = len(re.findall(r"<img\b", dom))
    return f"{tables} tables, {images} images, {len(dom)} characters"


def check_screenshot(url: str, binary: str, out: Path, timeout: float, size: str = FULL_PAGE) -> str:
    """Write a `size` ("w,h") screenshot to `out`; raises RenderError unless it is a non-empty PNG."""
    out.unlink(missing_ok=True)
    chromium([f"--screenshot={out}", f"--window-size={size}", url], binary, timeout)
    if not out.is_file() or not out.read_bytes().startswith(PNG_MAGIC):
        raise RenderError(f"chromium wrote no PNG screenshot to {out}")
    return f"screenshot {out} ({out.stat().st_size} bytes)"


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run both checks and report; the exit code says what went wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html to render")
    parser.add_argument("--screenshot", type=Path, default=None, help="PNG out (default: beside the report)")
    parser.add_argument("--chromium", default=None, help="chromium binary (default: chromium on PATH)")
    parser.add_argument("--min-tables", type=int, default=5, help="tables the DOM must hold")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per chromium call")
    args = parser.parse_args(argv)

    binary = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None or not Path(binary).exists():
        print("error: chromium not found; install it with `apt-get install -y chromium` "
              "or pass --chromium PATH", file=sys.stderr)
        return 2
    if not args.report.is_file():
        print(f"error: no report at {args.report}", file=sys.stderr)
        return 2
    url = args.report.resolve().as_uri()
    shot = args.screenshot or args.report.with_name(args.report.stem + "_screenshot.png")
    try:
        print("dom:", check_dom(url, binary, args.min_tables, args.timeout))
        print(check_screenshot(url, binary, shot.resolve(), args.timeout))
        first = shot.with_name(shot.stem + "_first_screen.png").resolve()
        print(check_screenshot(url, binary, first, args.timeout, FIRST_SCREEN))
    except (RenderError, OSError) as exc:
        print(f"error: rendering {args.report} failed: {exc}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
