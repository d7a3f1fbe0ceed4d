"""uer: Universal Encoder Representations, rebuilt on Hydra and modern PyTorch."""

__version__ = "0.1.0"
