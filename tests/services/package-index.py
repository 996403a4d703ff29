#!/usr/bin/env python3
"""A PEP 503 package index on loopback, for tests: wheels made here, served over HTTP.

    package-index.py publish DIR NAME VERSION   make NAME-VERSION's wheel in DIR and relist
    package-index.py serve DIR PORT             serve DIR on 127.0.0.1:PORT

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


def main():
    command, root, *rest = sys.argv[1:]
    os.makedirs(os.path.join(root, "files"), exist_ok=True)
    if command == "serve":
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
        http.server.ThreadingHTTPServer(("127.0.0.1", int(rest[0])), handler).serve_forever()
    name, version = rest
    filename, data = wheel(name, version)
    path = os.path.join(root, "files", filename)
    if command != "publish":
        sys.exit(f"unknown command {command}: publish or serve")
    with open(path, "wb") as fh:
        fh.write(data)
    print(hashlib.sha256(data).hexdigest())
    relist(root, name)


main()
