"""The paper's results in miniature (``unilip reproduce``): each experiment trains its variants with :mod:`unilip.train`,
scores them with :mod:`unilip.eval` and writes a report beside the paper's numbers (``report.py``).

``tokenizer.py``: reconstruction against understanding, the distillation and staging ablations. ``generator.py``:
dual conditions against queries or hidden states alone, and the UniLIP latent against a plain autoencoder's.
"""
