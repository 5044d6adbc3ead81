"""Artifact stores of the storage initializer (``python -m ferryman.storage_init``).

A package apart from the operator: the initializer runs in a model pod's init container
and needs store clients (the ``storage`` extra: obstore for S3, google-cloud-storage,
oras) that the operator never imports (``.importlinter``). Modules:

- ``failure``: the reasons an initializer ends with, one line each (the contract with the
  operator's Pod watch: ``<Reason>: <message>``);
- ``tree``: the digest of a file and of a directory tree (docs/artifacts.md);
- ``sink``: writing a download into the model volume while hashing it;
- one module per store: ``https``, ``s3``, ``gcs``, ``oci``, ``pvc``;
- ``fetch``: a URI to its store, then fetch and verify.

Each store module imports its client library lazily, inside its functions, so a missing
extra is an ``Unsupported`` failure naming the extra, not an ImportError at start-up.
"""
