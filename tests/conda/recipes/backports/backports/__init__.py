# The backports namespace package, shared by backports.* (kiln test fixture).
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
