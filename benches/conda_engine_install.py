"""The engine side of benches/conda.sh: install a kiln conda lock inside a build step with py-rattler,
as repo2docker does with micromamba. The lock's packages are pinned exactly (name==version=build)
and fetched from CHANNEL (the same mirror kiln uses), so both paths install the same records.

Usage: python conda_engine_install.py CHANNEL_URL LOCK_FILE PREFIX CACHE_DIR
"""

import asyncio
import sys
import time

import rattler


def pins(lock_path):
    specs = []
    for line in open(lock_path):
        line = line.strip()
        if not line or line.startswith("#") or line == "@EXPLICIT":
            continue
        name_version_build = line.split("#")[0].rsplit("/", 1)[1]
        stem = name_version_build.removesuffix(".conda").removesuffix(".tar.bz2")
        name, version, build = stem.rsplit("-", 2)
        specs.append(f"{name} =={version} {build}")
    return specs


async def main(channel, lock_path, prefix, cache):
    started = time.monotonic()
    records = await rattler.solve(
        sources=[rattler.Channel(channel)],
        specs=pins(lock_path),
        platforms=["linux-64", "noarch"],
        virtual_packages=[
            rattler.GenericVirtualPackage(rattler.PackageName("__glibc"), rattler.Version("2.36"), rattler.BuildString("0")),
            rattler.GenericVirtualPackage(rattler.PackageName("__unix"), rattler.Version("0"), rattler.BuildString("0")),
            rattler.GenericVirtualPackage(rattler.PackageName("__linux"), rattler.Version("6.1"), rattler.BuildString("0")),
        ],
    )
    solved = time.monotonic()
    await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False)
    done = time.monotonic()
    print(f"py-rattler: {len(records)} packages, solve {solved - started:.3f} s, install {done - solved:.3f} s")


asyncio.run(main(*sys.argv[1:5]))
