"""Where the plugin's protocol library comes from: the one module that decides.

The installed plugin carries `shared` and `requests_toolbelt` inside its own package (`odx_relay/ext/`),
so nothing generic lands on `sys.path` and another plugin's copies cannot shadow ours. A development
checkout has no `ext/` folder and uses the repository's top-level `shared` instead. Every other module
of the plugin imports `shared` from here, never directly.
"""
from importlib.util import find_spec

if find_spec(f"{__package__}.ext") is not None:
    from .ext import shared
else:
    import shared

__all__ = ["shared"]
