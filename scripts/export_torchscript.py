"""Export MiDaS v2.1 small to TorchScript and ONNX: the same command as ``midas-depth export``.

    python -m scripts.export_torchscript --output models/midas_small.pt          # official weights
    python -m scripts.export_torchscript --weights FILE --output models/midas_small.pt
    python -m scripts.export_torchscript --random-weights --output models/midas_small.pt

Run it from the repository root (or anywhere with the package installed); it needs the export
stack of requirements-export.txt (timm, torchvision, onnx).
"""

from midas_service.export.command import main

if __name__ == "__main__":
    raise SystemExit(main(prog="export_torchscript"))
