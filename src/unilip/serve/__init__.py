"""``unilip serve``: a web demo of the four things UniLIP does (reconstruct, ask, generate, edit).

Two layers, so that almost everything is tested without a browser:

- :mod:`unilip.serve.handlers`: plain functions, one per tab, that validate every input on the server and raise
  :class:`~unilip.errors.UniLIPError` with a message for the page. No Gradio import.
- :mod:`unilip.serve.app`: the Gradio page over them and the server (loopback by default, its own temporary
  folder, a bounded queue, nothing fetched from the internet). Needs the ``demo`` extra: ``pip install
  "unilip[demo]"``.
"""

from unilip.serve.handlers import DemoModels, Limits

__all__ = ["DemoModels", "Limits", "serve", "start"]


def serve(*args, **kwargs) -> None:
    """Serve the demo until interrupted (see :func:`unilip.serve.app.serve`)."""
    from unilip.serve.app import serve as _serve

    _serve(*args, **kwargs)


def start(*args, **kwargs):
    """Start the demo without blocking; returns a server with ``url`` and ``close()`` (see
    :func:`unilip.serve.app.start`)."""
    from unilip.serve.app import start as _start

    return _start(*args, **kwargs)
