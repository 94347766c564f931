"""Training: one shared loop (:mod:`unilip.train.loop`) and the tasks that plug into it (tokenizer, ...)."""
