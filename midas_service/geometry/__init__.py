"""3D from one photo: the camera, the depth rule, the grid and its mesh, as pure functions.

No I/O and no HTTP here; ``writers.py`` turns the arrays into PLY and GLB bytes.
"""
