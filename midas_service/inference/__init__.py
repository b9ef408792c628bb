"""Image to depth: preprocessing, the engines, the per-worker runtime, core sharing."""
