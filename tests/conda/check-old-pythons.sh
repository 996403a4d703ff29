#!/usr/bin/env bash
# Checks the fixture channel's python 2.7 and 3.6: for each, solves `python=X.Y ipykernel` and installs
# `python=X.Y ipykernel pip` from the channel alone (with the fixture venv's py-rattler), then, in a Debian 12
# container (kiln/base:bookworm, so that the libraries outside the environment are bookworm's), imports a
# list of stdlib modules, starts `python -m ipykernel_launcher -f conn.json`, runs
# `import sys; print(sys.version)` in that kernel with the environment's jupyter_client and checks the
# version it prints, and has pip install a local project (offline) into the environment's site-packages.
#
# Usage: bash tests/conda/check-old-pythons.sh CHANNEL_DIR
#
# Needs the venv that make-channel.sh made (in ${KILN_CONDA_FIXTURE_CACHE:-/var/cache/kiln-conda-fixture},
# or ~/.cache/kiln-conda-fixture) and Docker with the image kiln/base:bookworm (KILN_CHECK_IMAGE).
# Offline: the channel is read as file://. Exits 1 when a check fails.
set -euo pipefail
[ $# -eq 1 ] && [ -f "$1/linux-64/repodata.json" ] || {
    echo "usage: bash tests/conda/check-old-pythons.sh CHANNEL_DIR (a channel made by make-channel.sh)" >&2; exit 2; }
channel=$(cd "$1" && pwd)
image=${KILN_CHECK_IMAGE:-kiln/base:bookworm}
venv=
for cache in "${KILN_CONDA_FIXTURE_CACHE:-}" /var/cache/kiln-conda-fixture \
    "${XDG_CACHE_HOME:-$HOME/.cache}/kiln-conda-fixture"; do
    if [ -n "$cache" ] && [ -x "$cache/venv/bin/python" ]; then venv=$cache/venv; break; fi
done
[ -n "$venv" ] || { echo "check-old-pythons: no fixture venv: run tests/conda/make-channel.sh first" >&2; exit 2; }
work=$(mktemp -d)
# The environments are written by a root container (the .pyc files): remove them from one too.
trap 'docker run --rm --network none -v "$work:$work" "$image" rm -rf "$work" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cat > "$work/solve.py" <<'EOF'
import asyncio, os, sys
from rattler import Channel, Gateway, VirtualPackage, install, solve
channel, prefix, cache, python = sys.argv[1:]
async def main():
    gateway = Gateway(cache_dir=cache + "/gateway")
    for specs in (["python=" + python, "ipykernel"], ["python=" + python, "ipykernel", "pip"]):
        records = await solve([Channel("file://" + channel)], specs, gateway=gateway,
                              platforms=["linux-64", "noarch"], virtual_packages=VirtualPackage.detect())
        print("  %s: %d packages" % (" ".join(specs), len(records)))
    for r in sorted(records, key=lambda r: r.name.normalized):
        print("  %s %s %s (%s)" % (r.name.normalized, r.version, r.build, r.subdir))
    await install(records, target_prefix=prefix, cache_dir=cache + "/pkgs", show_progress=False)
asyncio.run(main())
# Not a normal exit: py-rattler 0.28 sometimes crashes in interpreter finalization (PyGILState_Release
# from one of its threads), after the work is done.
sys.stdout.flush()
os._exit(0)
EOF

# Run by the environment's python (2.7 or 3.6) in the container.
cat > "$work/check.py" <<'EOF'
from __future__ import print_function
import os, subprocess, sys, tempfile, time
expected, modules = sys.argv[1], sys.argv[2].split(",")
failed = []
for name in modules:
    try:
        __import__(name)
    except Exception as e:
        failed.append(name)
        print("  import %s: FAILED (%s: %s)" % (name, type(e).__name__, e))
print("  imports: %d of %d work%s" % (len(modules) - len(failed), len(modules),
                                        "" if not failed else "; not: " + " ".join(failed)))
import ssl, sqlite3, zlib
print("  ssl: %s; sqlite3: %s; zlib: %s" % (ssl.OPENSSL_VERSION, sqlite3.sqlite_version, zlib.ZLIB_VERSION))
try:
    from queue import Empty
except ImportError:
    from Queue import Empty

from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file
conn = os.path.join(tempfile.mkdtemp(), "c.json")
write_connection_file(conn, ip="127.0.0.1")
kernel_log = open(conn + ".log", "w+")  # shown when the check fails
kernel = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", conn], stdout=kernel_log,
                          stderr=subprocess.STDOUT)
client = BlockingKernelClient(connection_file=conn)
client.load_connection_file()
client.start_channels()
try:
    # Ready when a kernel_info request has its reply on shell and a message on iopub (so the iopub
    # subscription is up and no output is lost). Not wait_for_ready: without a KernelManager,
    # jupyter_client 7 takes a heartbeat that is not answered within a second (the first start compiles
    # the .pyc files) for a dead kernel, and jupyter_client 5 does not wait for iopub.
    deadline = time.time() + 120
    while True:
        if kernel.poll() is not None:
            sys.exit("  kernel exited with %s before it answered" % kernel.returncode)
        if time.time() > deadline:
            sys.exit("  kernel did not answer kernel_info")
        client.kernel_info()
        try:
            client.get_shell_msg(timeout=5)
            client.get_iopub_msg(timeout=1)
            break
        except Empty:
            pass
    msg_id = client.execute("import sys; print(sys.version)")
    out, status = [], None
    deadline = time.time() + 60
    while status != "idle" and time.time() < deadline:
        msg = client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "status":
            status = msg["content"]["execution_state"]
    reply = client.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != msg_id:  # the replies to the other kernel_info requests
        reply = client.get_shell_msg(timeout=30)
    text = "".join(out).strip()
    print("  kernel (%s): %r" % (reply["content"]["status"], text))
    ok = reply["content"]["status"] == "ok" and text.startswith(expected + ".")
finally:
    client.shutdown()
    client.stop_channels()
    for _ in range(50):
        if kernel.poll() is not None:
            break
        time.sleep(0.1)
    else:
        kernel.kill()
    if not ok:
        kernel_log.seek(0)
        print("  the kernel's output:\n" + kernel_log.read())

# pip (the environment's, offline) installs a project into the environment's site-packages.
project = tempfile.mkdtemp()
with open(os.path.join(project, "setup.py"), "w") as f:
    f.write("from setuptools import setup\nsetup(name='kiln-check', version='1.0', py_modules=['kiln_check'])\n")
with open(os.path.join(project, "kiln_check.py"), "w") as f:
    f.write("")
command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps",
           "--disable-pip-version-check", "--no-python-version-warning", project]
pip_run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
pip_out = pip_run.communicate()[0].decode()
pip = pip_run.returncode
where = subprocess.check_output([sys.executable, "-c", "import kiln_check; print(kiln_check.__file__)"],
                                cwd="/").decode().strip() if pip == 0 else ""
site = os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
pip_ok = where.startswith(site + os.sep)
print("  pip install: %s (%s)" % ("ok" if pip_ok else "FAILED", where or "exit status %d" % pip))
if not pip_ok:
    print(pip_out)
sys.exit(0 if ok and pip_ok and not failed else 1)
EOF

status=0
# The stdlib modules to try (the first six are the ones kiln cares most about).
common=ssl,sqlite3,readline,zlib,ctypes,json,hashlib,bz2,pyexpat,xml.etree.ElementTree,curses,uuid,select
common=$common,socket,crypt,multiprocessing,unicodedata,zipfile,datetime
for py in 2.7 3.6; do
    case $py in
        # Not checked, as they do not work: gdbm and dbm.gnu (Debian and Ubuntu package them apart), nis.
        2.7) modules=$common,bsddb,dbm,cPickle,cStringIO,_hashlib ;;
        3.6) modules=$common,lzma,decimal,_decimal,dbm.ndbm,sqlite3.dbapi2,asyncio,distutils.core,lib2to3 ;;
    esac
    env=$work/env$py
    echo "== python=$py ipykernel"
    if ! "$venv/bin/python" "$work/solve.py" "$channel" "$env" "$work/cache" "$py"; then
        echo "python $py: cannot solve or install" >&2; status=1; continue
    fi
    # Shared libraries that an ELF file of the environment does not find in the container, by itself: reported,
    # not checked (pyzmq's bundled libzmq finds its libsodium only through the RPATH of the module that loads
    # it, as in the wheel).
    docker run --rm --network none -v "$env:$env:ro" "$image" sh -c '
        find "$1" -type f \( -name "*.so*" -o -path "$1/bin/*" \) | while read -r f; do
            ldd "$f" 2>/dev/null | sed -n "s|^\t\(.*\) => not found|  not found: \1 (${f#$1/})|p"
        done' _ "$env"
    if docker run --rm --network host -v "$env:$env" -v "$work/check.py:/check.py:ro" -e HOME=/tmp \
        "$image" "$env/bin/python" /check.py "$py" "$modules"; then
        echo "python $py: OK"
    else
        echo "python $py: FAILED" >&2; status=1
    fi
done
exit $status
