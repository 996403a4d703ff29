#!/usr/bin/env python3
"""A PEP 503 package index on loopback, for tests: wheels made here, served over HTTP.

    package-index.py publish DIR NAME VERSION   make NAME-VERSION's wheel in DIR and relist
    package-index.py probe DIR NAME VERSION GLOB
                                                make NAME-VERSION's source archive, whose build
                                                fails when a path matching GLOB is under kiln's uv
                                                cache (/var/cache/kiln/uv): what a package chosen
                                                by a hostile repository could see there
    package-index.py serve DIR PORT [UPSTREAM]  serve DIR on 127.0.0.1:PORT; with UPSTREAM (such as
                                                https://pypi.org/simple/), a project DIR does not
                                                hold is answered with UPSTREAM's page (a mirror that
                                                passes through), and every project asked for is
                                                appended to DIR/requests.log

The wheel is pure Python: a module NAME (with - as _) whose __version__ is VERSION. The index
page of a project (DIR/simple/<name>/index.html) links every wheel with its #sha256= fragment, as
PyPI does, so that installers can check and lock hashes. It prints the wheel's sha256 on publish.
"""
import base64
import functools
import hashlib
import http.server
import io
import os
import re
import sys
import zipfile


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel(name, version):
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: kiln-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for path, text in files.items():
            entry = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            z.writestr(entry, text)
    return f"{module}-{version}-py3-none-any.whl", out.getvalue()


PROBE = """import glob, sys
found = sorted(glob.glob("/var/cache/kiln/uv/**/{glob}", recursive=True))
if found:
    sys.exit("the cache holds " + " ".join(found[:3]))
from setuptools import setup
setup(name="{name}", version="{version}", packages=["{module}"])
"""


def sdist(name, version, pattern):
    """A source archive whose setup.py runs when it is built (as any sdist's does)."""
    import tarfile

    module = name.replace("-", "_")
    top = f"{module}-{version}"
    files = {
        f"{top}/setup.py": PROBE.format(glob=pattern, name=name, version=version, module=module),
        f"{top}/pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
        f"{top}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{top}/{module}/__init__.py": f'__version__ = "{version}"\n',
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1767225600
            tar.addfile(info, io.BytesIO(data))
    return f"{top}.tar.gz", out.getvalue()


def relist(root, name):
    project = normalise(name)
    module = name.replace("-", "_")
    files = sorted(f for f in os.listdir(os.path.join(root, "files")) if f.startswith(module + "-"))
    links = []
    for f in files:
        with open(os.path.join(root, "files", f), "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        links.append(f'<a href="../../files/{f}#sha256={digest}">{f}</a><br>')
    folder = os.path.join(root, "simple", project)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "index.html"), "w") as fh:
        fh.write("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")


class Mirror(http.server.SimpleHTTPRequestHandler):
    """The index's own projects, else the upstream index's page for the project."""

    upstream = None

    def end_headers(self):
        # Pages change when a test publishes: installers must ask again, not keep a copy.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def do_GET(self):
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) == 2 and parts[0] == "simple":
            project = normalise(parts[1])
            with open(os.path.join(self.directory, "requests.log"), "a") as log:
                log.write(project + "\n")
            if not os.path.isdir(os.path.join(self.directory, "simple", project)):
                return self.pass_through(project)
            self.path = f"/simple/{project}/"
        return super().do_GET()

    def pass_through(self, project):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.upstream.rstrip("/") + f"/{project}/", headers={"Accept": "text/html"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                body, status = answer.read(), answer.status
        except urllib.error.HTTPError as e:
            body, status = b"", e.code
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    command, root, *rest = sys.argv[1:]
    os.makedirs(os.path.join(root, "files"), exist_ok=True)
    if command == "serve":
        upstream = rest[1] if len(rest) > 1 else None
        handler = functools.partial(Mirror if upstream else http.server.SimpleHTTPRequestHandler, directory=root)
        Mirror.upstream = upstream
        http.server.ThreadingHTTPServer(("127.0.0.1", int(rest[0])), handler).serve_forever()
    if command == "probe":
        name, version, pattern = rest
        filename, data = sdist(name, version, pattern)
    elif command == "publish":
        name, version = rest
        filename, data = wheel(name, version)
    else:
        sys.exit(f"unknown command {command}: publish, probe or serve")
    path = os.path.join(root, "files", filename)
    with open(path, "wb") as fh:
        fh.write(data)
    print(hashlib.sha256(data).hexdigest())
    relist(root, name)


main()
