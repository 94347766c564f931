"""Training: one shared loop (:mod:`unilip.train.loop`, with ``checkpoint.py`` and ``ema.py``) and the tasks that plug
into it, one per model (``tokenizer.py``, ``mllm.py``, ``generator.py``, ``autoencoder.py``), with their data streams
(``mllm_data.py``, ``generator_data.py``, ``frozen_pool.py``) and the stage config they share (``stage_config.py``)."""
