"""Local training on a worker: model families, weight codecs and local steps.

Modules: ``codec`` (tensors <-> safetensors/base64, fp32/fp16/int8), ``families`` (build
a model from a :class:`~nexus_common.protocol.ModelSpec`), ``encoder`` (the frozen sentence
encoder with mean pooling), ``local`` (run local steps, return a weight delta) and
``evaluate`` (predictions and accuracy). Importing this package imports nothing heavy.
"""
