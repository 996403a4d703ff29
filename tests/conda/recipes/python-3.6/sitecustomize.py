# Part of kiln's fixture python 3.6 (Ubuntu 18.04's CPython as a conda package). Outside a venv, Ubuntu's
# site.py adds only <prefix>/lib/python3/dist-packages and the like to sys.path; conda packages install
# into site-packages: add it.
import os
import site
import sys

site.addsitedir(os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages"))
