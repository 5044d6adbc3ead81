"""Pure decisions: desired child objects, the strategy state machine, gates.

Nothing here does I/O or imports kopf, kubernetes or an HTTP client (import-linter
checks it): inputs are the API models and what was observed, outputs are plain data.
"""
