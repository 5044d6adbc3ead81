"""``python -m ferryman``: run the operator (see :mod:`ferryman.main`)."""

from ferryman.main import main

if __name__ == "__main__":
    raise SystemExit(main())
