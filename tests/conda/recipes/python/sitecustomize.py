# Part of kiln's fixture python (Debian's CPython as a conda package). Debian's site.py adds
# <prefix>/lib/python3.X/site-packages to sys.path only inside a venv; conda packages install there, so add
# it for every prefix. (site.py itself cannot be patched: CPython 3.11 runs a frozen copy of it.)
import os
import site
import sys

site.addsitedir(os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages"))
