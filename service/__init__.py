"""The coldproxy HTTP service: reads only a model package, runs ONNX Runtime, stores proxies in Redis."""
