"""mvfx: offline feature extraction and embedding store for affective computing on music videos.

The repository's folders are installed as one package (see pyproject.toml's
package-dir mapping): ``mvfx.media`` (errors, probe, decode, encode) at the
bottom, then ``mvfx.extractors``, ``mvfx.pipeline``, ``mvfx.stores``,
``mvfx.heads``, and ``mvfx.cli`` with ``mvfx.commands`` on top.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mvfx")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
