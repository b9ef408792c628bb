"""Packaging beyond pyproject.toml: templates/ and static/ stay at the top of the repository and
install as the package data midas_service/templates and midas_service/static, so an installed
service runs from any directory (web/__init__.py looks there first)."""

from pathlib import Path

from setuptools import find_packages, setup

# Every folder below templates/ and static/ (vendor/three, examples, ...) as a data package.
ASSETS = {
    "midas_service." + ".".join(folder.parts): folder.as_posix()
    for top in ("templates", "static")
    for folder in [Path(top), *sorted(p for p in Path(top).rglob("*") if p.is_dir())]
}

setup(
    packages=[*find_packages(include=["midas_service", "midas_service.*"]), *ASSETS],
    package_dir=ASSETS,
    package_data={"midas_service.export": ["*.tsv"], **{name: ["*"] for name in ASSETS}},
)
