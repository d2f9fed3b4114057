"""ONNX export and the model package."""
