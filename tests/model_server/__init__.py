"""ferryman's tiny model server for tests (``server.py``; image built from the Dockerfile
here by the release workflow)."""
