"""The contract that neither deployable owns.

Both the master (``master_app``) and the worker (``worker_node``) import these modules;
neither owns them, and this package imports neither of them (checked by import-linter):

- :mod:`nexus_common.protocol`: the wire models (``Subtask``, ``SubtaskResult``, payloads).
- :mod:`nexus_common.encoder`: the sentence encoder (the embedded MiniLM or any model id).
- :mod:`nexus_common.training`: tensor codecs, model families, local steps, evaluation.
- :mod:`nexus_common.cli`: one exit-code set and one way to run a typer command line.

Importing this package imports nothing heavy.
"""
