"""Packaging beyond pyproject.toml: templates/ and static/ stay at the top of the repository and
install as the package data midas_service/templates and midas_service/static, so an installed
service runs from any directory (web/__init__.py looks there first)."""

from setuptools import find_packages, setup

ASSETS = {
    "midas_service.templates": "templates",
    "midas_service.static": "static",
    "midas_service.static.examples": "static/examples",
}

setup(
    packages=[*find_packages(include=["midas_service", "midas_service.*"]), *ASSETS],
    package_dir=ASSETS,
    package_data={"midas_service.export": ["*.tsv"], **{name: ["*.*"] for name in ASSETS}},
)
