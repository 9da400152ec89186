"""Deployment: export to ONNX / torch.export / TorchScript with a dynamic batch (``export``),
and parameter and FLOP counts as in the papers' tables (``profile``)."""
