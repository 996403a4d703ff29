from setuptools import setup

setup(name="kiln-example-greet", version="0.1.0", py_modules=["greet"])
