"""kiln test fixture: a tiny noarch python package."""

__version__ = "@VERSION@"


def greet(name="world"):
    """Return a greeting that names the package version."""
    return f"hello {name} from kiln-greet {__version__}"
