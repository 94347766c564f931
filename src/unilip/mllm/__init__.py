"""The MLLM that reads prompts and images: InternVL built from transformers' own classes (``model.py``: build, load
and save, swap in the UniLIP encoder, answer questions) and its chat format and text tokenizer
(``chat.py``)."""
