"""The folder a report is written into: Jinja2 pages (autoescaped), the shipped static files, safe file names."""
from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from mvfx.media.errors import MvfxError

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
MARKER = ".mvfx-report"  # a folder holding this file is a report mvfx wrote, and may be rewritten whole
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def mvfx_version() -> str:
    """The installed mvfx's version (as ``mvfx.__version__``; read from the metadata, as layers never import the root)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mvfx")
    except PackageNotFoundError:
        return "0+unknown"


def file_name(name: str, limit: int = 80) -> str:
    """A file-name-safe form of a clip id or run name: ``clip_000`` stays ``clip_000``; any other name keeps its
    safe characters and gains a short hash of the original, so two ids never share a file (``a/b`` vs ``a_b``)."""
    safe = _UNSAFE.sub("_", name).strip("._")[:limit]
    if safe == name and safe:
        return safe
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{safe or 'x'}-{digest}"


def human_bytes(n: float | int | None) -> str:
    if n is None or n != n or n < 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass
class ReportResult:
    """What a report wrote: the index page, how many pages and pictures, bytes on disk, seconds taken."""

    index: Path
    pages: int
    images: int
    bytes: int
    seconds: float
    notes: list[str]


class Site:
    """A report folder being written. ``page(template, relpath, **context)`` renders one page; every page gets
    ``root`` (the relative way back to the folder's top, for links and assets) and ``generator``."""

    def __init__(self, out: str | Path, title: str, nav: list[tuple[str, str]], started: float | None = None) -> None:
        self.out = Path(out)
        self.started = time.perf_counter() if started is None else started  # the report's seconds count from here
        self.title = title
        self.nav = nav
        self.pages = 0
        self.images = 0
        self.generator = {"version": mvfx_version(), "time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["bytes"] = human_bytes
        self.env.filters["num"] = _number
        self._prepare()

    def _prepare(self) -> None:
        """An empty folder, or a report written before (rewritten whole, so no page of a clip left out survives)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise MvfxError(f"{out}: exists and is not a folder; give --out a folder for the report")
        if out.is_dir() and any(out.iterdir()):
            if not (out / MARKER).is_file():
                raise MvfxError(f"{out}: not empty and not a report mvfx wrote; give --out a new or empty folder")
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("written by mvfx report; the whole folder is replaced when the report is written again\n")
        shutil.copytree(STATIC, out / "static")

    def path(self, relpath: str) -> Path:
        target = self.out / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def page(self, template: str, relpath: str, **context) -> Path:
        depth = relpath.count("/")
        target = self.path(relpath)
        html = self.env.get_template(template).render(root="../" * depth, generator=self.generator, nav=self.nav,
                                                      report_title=self.title, **context)
        target.write_text(html, encoding="utf-8")
        self.pages += 1
        return target

    def image(self, relpath: str) -> Path:
        """Where to draw (or copy) a picture; counted."""
        self.images += 1
        return self.path(relpath)

    def result(self, notes: list[str]) -> ReportResult:
        return ReportResult(self.out / "index.html", self.pages, self.images, folder_bytes(self.out),
                            time.perf_counter() - self.started, notes)


def _number(value, digits: int = 3) -> str:
    """Numbers for tables: ints as they are, floats to ``digits`` decimals, missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:
        return "-"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.{digits}f}"
