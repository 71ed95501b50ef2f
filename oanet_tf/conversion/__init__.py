"""Weights of other implementations converted into oanet_tf model dirs."""
