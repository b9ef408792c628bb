"""The export side: network, checkpoint download and verification, model files.

The only code that imports timm, torchvision or onnx; the serving image does not ship them."""
