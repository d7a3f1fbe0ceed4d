"""This project's Hydra launcher for sweeps (in Hydra's plugin namespace, where Hydra looks for launchers)."""
