"""Federated training on the grid (no Streamlit here).

``sharding`` (IID and label-skewed splits), ``strategies`` (FedAvg, DiLoCo), ``checkpoints``
(atomic, checksummed, last N kept), ``rounds`` (the rounds loop over workers with quorum
and deadline), ``deploy`` (publish a trained head to workers, record it in the store),
``datasets`` (load a labelled CSV / the digits demo) and ``centralised`` (the baseline).
"""
