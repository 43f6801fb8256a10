"""The reading examples of the README and of the docs pages must work exactly as written.

The python blocks are found the way ``helpers.readme_python_block`` finds the README's, in every page of
``PAGES``; each one runs against the test demo store (``demo/features.zarr``) or its HDF5 export
(``demo/features.h5``), and the labels of its corpus (``demo/corpus``). The one exception, reading from S3 (``icechunk.s3_storage``), needs the
localhost S3 server and is run by tests/test_object_store.py, which reads it from the README only.
"""
import re
import textwrap

import pytest
from helpers import REPO, readme_python_block

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
S3_ONLY = "icechunk.s3_storage"
# The first line each reading example prints on the test demo store (6 clips of 4 s: 8 emobase rows each).
PRINTS = {
    "MOBILENET_V3_IMAGENET": "(2, 960) ['mobilenet_v3_imagenet']",  # docs/architecture.md's new extractor, random weights
    "CentroidHead": "CentroidHead 1.0",  # docs/architecture.md's new head, fitted on the store's six clips of six classes
    "zarr.open_group(store": "(8, 988) [0.  0.5] pcm_intensity_sma_max none",
    "h5py.File": "(8, 988) [0.  0.5] pcm_intensity_sma_max none",
    "open_store(": "(8, 988) 988 none 6 6 0",
    "per_clip": "6 (8, 32) ['hue_000_020', 'hue_020_040']",
}


def python_blocks(marker: str = "") -> list[tuple[str, str]]:
    """(page, block) for every python block of ``PAGES`` containing ``marker``, in page order (a block inside a list
    item, indented with it, dedented)."""
    return [(str(page.relative_to(REPO)), textwrap.dedent(block)) for page in PAGES
            for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S) if marker in block]


RUN_HERE = [(page, block) for page, block in python_blocks() if S3_ONLY not in block]


@pytest.fixture(scope="module")
def demo_h5(demo_store, tmp_path_factory):
    from mvfx.stores import open_store
    from mvfx.stores.exchange import export_hdf5

    h5 = tmp_path_factory.mktemp("exchange") / "features.h5"
    export_hdf5(open_store(demo_store), h5)
    return h5


def test_plain_zarr_reading_example(demo_store, capsys):
    code = readme_python_block("zarr.open_group(store")
    assert 'store = "demo/features.zarr"' in code and len(code.strip().splitlines()) <= 12
    exec(code.replace("demo/features.zarr", str(demo_store)), {})
    printed = capsys.readouterr().out
    assert printed.startswith("(8, 988) [0.  0.5] pcm_intensity_sma_max none")


def test_plain_h5py_reading_example(demo_h5, capsys):
    code = readme_python_block("h5py.File")
    assert len(code.strip().splitlines()) <= 12
    exec(code.replace("demo/features.h5", str(demo_h5)), {})
    assert capsys.readouterr().out.startswith("(8, 988) [0.  0.5] pcm_intensity_sma_max none")


@pytest.fixture
def registries_restored():
    """The docs' examples register a new extractor, its weights and a new head: gone again after each test, so no
    later test (the fast listing compares every registered name) sees them."""
    from mvfx.extractors import registry, weight_registry
    from mvfx.heads import estimator

    tables = (registry._REGISTRY, weight_registry.REGISTRY, estimator.HEADS)
    before = [set(table) for table in tables]
    yield
    for table, keys in zip(tables, before):
        for key in set(table) - keys:
            del table[key]


@pytest.mark.parametrize(("page", "code"), RUN_HERE, ids=[f"{page}:{n}" for n, (page, _) in enumerate(RUN_HERE)])
@pytest.mark.usefixtures("registries_restored")
def test_every_python_block_of_the_readme_and_docs_runs(page, code, demo_corpus, demo_store, demo_h5, capsys):
    exec(code.replace("demo/features.zarr", str(demo_store)).replace("demo/features.h5", str(demo_h5))
         .replace("demo/corpus", str(demo_corpus)), {})
    printed = capsys.readouterr().out
    expected = [line for marker, line in PRINTS.items() if marker in code]
    assert expected, f"{page}: a python block with no expected output in PRINTS:\n{code}"
    assert printed.startswith(expected[0]), f"{page} printed {printed!r}"


def test_the_pages_hold_the_blocks_other_tests_run():
    pages = {page for page, _ in python_blocks()}
    assert {"README.md", "docs/store-format.md"} <= pages
    assert [page for page, _ in python_blocks(S3_ONLY)] == ["README.md"], "the S3 example runs from the README only"
