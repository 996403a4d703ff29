"""A CRAN-like R package repository on loopback, standing in for CRAN and its dated snapshots
(Posit Package Manager), which this machine cannot reach. No R is needed to make it.

Usage:
  python3 tests/services/cran.py make DIR [--heavy N]
      DIR/src/contrib/ gets source tarballs and a PACKAGES index for:
        tinypkg 0.1.0   pure R, exports tiny_hello()
        tinydep 0.2.0   Imports: tinypkg (>= 0.1.0), exports tiny_twice()
        tinyc   0.1.0   C code (needs a compiler), exports add2(a, b)
      --heavy N gives tinyc N extra generated C functions, so that compiling it takes as long as
      a real package's C code does (the benchmarks use it).
  python3 tests/services/cran.py serve DIR PORT SNAPSHOT...
      serves DIR as the repository at /cran/SNAPSHOT/ for each SNAPSHOT (say `2023-01-01`,
      `latest`), and nothing anywhere else; every request is appended to DIR/requests.log as
      `STATUS PATH`.

R asks for src/contrib/PACKAGES.rds and PACKAGES.gz first; both 404 here, then PACKAGES answers.
"""

import functools
import gzip
import http.server
import io
import os
import sys
import tarfile

# Fixed times and owners, so that the same command makes the same bytes.
MTIME = 1_700_000_000


def description(name, version, title, extra=""):
    return (
        f"Package: {name}\nVersion: {version}\nTitle: {title}\n"
        f"Description: A package of kiln's test repository.\nLicense: MIT\n"
        f"Author: kiln\nMaintainer: kiln <kiln@example.org>\nEncoding: UTF-8\n{extra}"
    )


def packages(heavy):
    generated = "".join(
        f"double tinyc_f{i}(double x) {{ double y = x; for (int k = 0; k < {i % 7 + 1}; k++) "
        f"y = y * {i + 1}.0 / (k + 1.5) + {i}.25; return y; }}\n"
        for i in range(heavy)
    )
    return {
        ("tinypkg", "0.1.0", "no", ""): {
            "DESCRIPTION": description("tinypkg", "0.1.0", "Says Hello"),
            "NAMESPACE": "export(tiny_hello)\n",
            "R/hello.R": 'tiny_hello <- function() "hello from tinypkg"\n',
        },
        ("tinydep", "0.2.0", "no", "Imports: tinypkg (>= 0.1.0)\n"): {
            "DESCRIPTION": description(
                "tinydep", "0.2.0", "Depends on tinypkg", "Imports: tinypkg (>= 0.1.0)\n"
            ),
            "NAMESPACE": "export(tiny_twice)\nimportFrom(tinypkg, tiny_hello)\n",
            "R/twice.R": "tiny_twice <- function() paste(tiny_hello(), tiny_hello())\n",
        },
        ("tinyc", "0.1.0", "yes", ""): {
            "DESCRIPTION": description("tinyc", "0.1.0", "Adds in C", "NeedsCompilation: yes\n"),
            "NAMESPACE": "useDynLib(tinyc)\nexport(add2)\n",
            "R/add.R": 'add2 <- function(a, b) .Call("tinyc_add", a, b, PACKAGE = "tinyc")\n',
            "src/add.c": (
                "#include <R.h>\n#include <Rinternals.h>\n"
                "SEXP tinyc_add(SEXP a, SEXP b) { return ScalarReal(asReal(a) + asReal(b)); }\n"
                + generated
            ),
        },
    }


def make(directory, heavy):
    contrib = os.path.join(directory, "src", "contrib")
    os.makedirs(contrib, exist_ok=True)
    index = []
    for (name, version, compiled, imports), files in packages(heavy).items():
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=MTIME) as gz, tarfile.open(
            fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT
        ) as tar:
            for path in sorted(files):
                data = files[path].encode()
                info = tarfile.TarInfo(f"{name}/{path}")
                info.size, info.mtime, info.mode = len(data), MTIME, 0o644
                tar.addfile(info, io.BytesIO(data))
        with open(os.path.join(contrib, f"{name}_{version}.tar.gz"), "wb") as out:
            out.write(buffer.getvalue())
        index.append(f"Package: {name}\nVersion: {version}\n{imports}NeedsCompilation: {compiled}\n")
    with open(os.path.join(contrib, "PACKAGES"), "w") as out:
        out.write("\n".join(index))


class Handler(http.server.SimpleHTTPRequestHandler):
    prefixes = ()
    log_path = None

    def do_GET(self):
        for header in ("If-Modified-Since", "If-None-Match"):
            del self.headers[header]
        path = self.path.split("?", 1)[0]
        for prefix in self.prefixes:
            if path.startswith(prefix):
                self.path = "/" + path[len(prefix):]
                super().do_GET()
                return
        self.send_error(404, "no such snapshot")

    def log_request(self, code="-", size="-"):
        with open(self.log_path, "a") as log:
            log.write(f"{int(code) if str(code).isdigit() else code} {self.requestline.split(' ')[1]}\n")

    def log_message(self, *args):
        pass


def serve(directory, port, snapshots):
    Handler.prefixes = tuple(f"/cran/{s}/" for s in snapshots)
    Handler.log_path = os.path.join(directory, "requests.log")
    handler = functools.partial(Handler, directory=directory)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    command, directory = sys.argv[1], sys.argv[2]
    if command == "make":
        heavy = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--heavy" else 0
        make(directory, heavy)
    elif command == "serve":
        serve(directory, int(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(__doc__)
