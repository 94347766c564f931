"""Evaluation, computed by our code on our outputs, never copied from a paper: reconstruction (``recon.py``, with
PSNR, SSIM, feature Fréchet distances and optional LPIPS / rFID in ``metrics.py``), understanding (``understanding.py``,
VQA accuracy per question type), the mini GenEval / ImgEdit / WISE scored by the mini world's detector
(``geneval_mini.py``, ``imgedit_mini.py``, ``wise_mini.py``, sharing ``gen_common.py``), and the sample folders the
official benchmarks' own scorers read (``dump.py``)."""
