"""The ground floor every layer shares: condition specs and batches (``conditions``), condition
dropout (``dropout``), condition encoders (``encoders``, MiniLM in ``minilm``), the plugin registry
(``plugins``), user-facing errors (``errors``), atomic writes (``atomic``), safe file reads
(``files``), shipped recipe paths (``shipped``), size limits (``sizes``) and the class allow-list
(``allowlist``). It imports nothing else of polyguide (``tests/core/test_core_layers.py``); at
module import time it needs only torch and the standard library.
"""
