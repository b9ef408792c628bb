"""Bytes in and out: decode and check uploads, output limits, colormaps, encoders."""
