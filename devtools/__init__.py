"""Helpers shared by the tests and the scripts (bench, soak, overload drill): real Gunicorn,
nginx and Redis on free loopback ports, load generation, test photos and model exports.

Not part of the installed package; importable from the repository root.
"""
