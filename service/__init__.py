"""The coldproxy HTTP service: reads only a bundle, runs ONNX Runtime, stores proxies in Redis."""
