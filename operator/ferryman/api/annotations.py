"""The annotations a user action travels in, one spelling for every reader and writer
in Python (the operator's handler, ``kubectl ferryman``, the test harness). The Argo CD
Lua actions cannot import them; ``tests/unit/test_argocd.py`` checks they spell the same
keys.

A user action is the pair: ``ACTION`` names it (``promote``, ``abort``, ...), ``ACTION_ID``
is a fresh nonce; the operator applies each nonce once (``status.handledActionId``).
"""

from __future__ import annotations

from ferryman.api.common import GROUP

ACTION = f"{GROUP}/action"
ACTION_ID = f"{GROUP}/action-id"
