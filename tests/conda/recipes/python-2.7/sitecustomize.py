# Part of kiln's fixture python 2.7 (Debian 11's CPython as a conda package). Debian's site.py adds only
# <prefix>/lib/python2.7/dist-packages to sys.path; conda packages install into site-packages: add it.
import os
import site
import sys

site.addsitedir(os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages"))
