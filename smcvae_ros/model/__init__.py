"""SMCVAE in PyTorch."""
from .io import load_model, save_model
from .losses import kl_loss, reconstruction_loss, smcvae_loss
from .patches import patch_to_pixel_mask, patchify, pixel_to_patch_mask, unpatchify
from .smcvae import SMCVAE, SMCVAEConfig, build_model

__all__ = ['SMCVAE', 'SMCVAEConfig', 'build_model', 'load_model', 'save_model', 'patchify', 'unpatchify',
           'pixel_to_patch_mask', 'patch_to_pixel_mask', 'kl_loss', 'reconstruction_loss', 'smcvae_loss']
