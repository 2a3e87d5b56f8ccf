"""The model layer: the VAE core, posteriors, building a VAE from a config, presets and quantization."""
from vaelab.model.distributions import DiagonalGaussian
from vaelab.model.vae import VAE, VAEOutput

__all__ = ["VAE", "VAEOutput", "DiagonalGaussian"]
