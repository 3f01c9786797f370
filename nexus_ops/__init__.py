"""The operator side: what people and scripts run against a grid, beside the master.

- :mod:`nexus_ops.health`: the one ``GET /health`` probe, and ``ping_workers`` that records
  each outcome in the registry (used by the heartbeat, ``manage_workers ping``, the
  Workers page and the local grid).
- :mod:`nexus_ops.tables`: plain-text and Markdown tables.
- :mod:`nexus_ops.workers_cli`: the registry CLI (``python -m database.manage_workers``).
- :mod:`nexus_ops.heartbeat`: one heartbeat (``python -m scripts.heartbeat``, the cron).
- :mod:`nexus_ops.alerts`: a worker going offline or coming back, posted to a webhook.
- :mod:`nexus_ops.call_cli`: ``nexus call``, one signed call to one worker.
- :mod:`nexus_ops.deploy` (with ``space_bundle``, ``space_hub``, ``space_wait``) and
  :mod:`nexus_ops.deploy_cli`: ``nexus deploy space OWNER/NAME``, a worker on a Docker Space.
- :mod:`nexus_ops.cli`: the ``nexus`` console script over all of the above and the master.

Everything here but :mod:`nexus_ops.cli` stays light (no torch, no master import), so the
cron can run it with ``requirements-heartbeat.txt`` alone.
"""
