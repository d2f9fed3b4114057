"""ONNX export of the serving components and the bundle directory the service loads."""
