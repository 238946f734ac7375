"""Membership-inference attacks: black-box (GAN-Leaks, DOMIAS), white-box (loss, FCRE, diffusion-structure attacks),
shadow models (LiRA). Every attack is registered by name in :data:`cmraudit.registry.ATTACKS`."""
