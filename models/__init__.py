"""Torch modules and their losses. Imports nothing of dreamops but `models`."""
from dreamops.models.controller import Controller
from dreamops.models.mdnrnn import MDNRNN, mdn_log_prob
from dreamops.models.vae import VAE, vae_kl

__all__ = ["VAE", "vae_kl", "MDNRNN", "mdn_log_prob", "Controller"]
