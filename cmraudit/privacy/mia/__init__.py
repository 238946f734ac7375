"""Membership-inference attacks: black-box (GAN-Leaks, DOMIAS), white-box (loss, FCRE), shadow models (LiRA)."""
