from setuptools import setup

setup(name="local-ref", version="0.1", py_modules=["localref"])
