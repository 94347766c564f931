"""Evaluation: reconstruction metrics (PSNR, SSIM, feature Fréchet distances, optional LPIPS / rFID), computed by
our code on our outputs, never copied from a paper."""
