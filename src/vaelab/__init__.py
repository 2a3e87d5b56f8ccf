"""vaelab: build, train, use and evolve variational autoencoders from declarative configs."""
__version__ = "0.1.0"
