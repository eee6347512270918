"""Build hook kept for the optional compiled search kernel; metadata lives in pyproject.toml."""

from setuptools import setup

setup()
