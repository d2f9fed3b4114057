"""ONNX export of the serving components into the model package directories the service loads."""
