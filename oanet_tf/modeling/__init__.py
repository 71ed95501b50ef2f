"""The network: backbone, FPN, instance and stuff branches, spatial ranking module."""
