#!/usr/bin/env python3
# An npm registry on loopback for the tests, standing in for an institution's npm mirror
# (KILN_NPM_REGISTRY): it serves packages the test publishes (a package document with its
# versions, and their tarballs, as registry.npmjs.org does) and records every path asked for.
#
#   npm-registry.py serve ROOT PORT
#   npm-registry.py publish ROOT NAME VERSION     (a package whose main module exports VERSION)
import base64
import hashlib
import http.server
import io
import json
import os
import sys
import tarfile


def publish(root, name, version):
    package = {"name": name, "version": version, "main": "index.js"}
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for path, text in (
            ("package/package.json", json.dumps(package)),
            ("package/index.js", f"module.exports = {json.dumps(version)};\n"),
        ):
            body = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(body)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(body))
    tgz = data.getvalue()
    os.makedirs(os.path.join(root, "tarballs"), exist_ok=True)
    filename = f"{name}-{version}.tgz"
    with open(os.path.join(root, "tarballs", filename), "wb") as fh:
        fh.write(tgz)
    document_path = os.path.join(root, "packages", name + ".json")
    os.makedirs(os.path.dirname(document_path), exist_ok=True)
    document = {"name": name, "versions": {}, "dist-tags": {}}
    if os.path.exists(document_path):
        document = json.load(open(document_path))
    document["versions"][version] = dict(
        package,
        dist={
            # The host is filled in when served, from the request's Host header.
            "tarball": f"@HOST@/-/tarballs/{filename}",
            "shasum": hashlib.sha1(tgz).hexdigest(),
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
        },
    )
    document["dist-tags"]["latest"] = version
    with open(document_path, "w") as fh:
        json.dump(document, fh)


class Registry(http.server.BaseHTTPRequestHandler):
    root = None

    def do_GET(self):
        path = self.path.split("?")[0]
        with open(os.path.join(self.root, "requests.log"), "a") as log:
            log.write(path + "\n")
        if path.startswith("/-/tarballs/"):
            file = os.path.join(self.root, "tarballs", os.path.basename(path))
            return self.answer(file, "application/octet-stream", None)
        name = path.lstrip("/").replace("%2f", "/").replace("%2F", "/")
        file = os.path.join(self.root, "packages", name + ".json")
        return self.answer(file, "application/json", f"http://{self.headers['Host']}")

    def answer(self, file, kind, host):
        if ".." in file or not os.path.isfile(file):
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error":"Not found"}')
            return
        body = open(file, "rb").read()
        if host:
            body = body.replace(b"@HOST@", host.encode())
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    command, root, *rest = sys.argv[1:]
    os.makedirs(root, exist_ok=True)
    if command == "serve":
        Registry.root = root
        http.server.ThreadingHTTPServer(("127.0.0.1", int(rest[0])), Registry).serve_forever()
    elif command == "publish":
        publish(root, *rest)
    else:
        sys.exit(f"unknown command {command}: serve or publish")


main()
