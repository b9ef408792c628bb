"""Video in, depth video out: decoding, colour-range policies, encoding, orchestration."""
