"""One lock for building models in this process.

transformers' ``from_pretrained`` builds a model with its parameters on the ``meta``
device and then fills them in; while it does, a model built or loaded in another thread
can end up with parameters left on ``meta`` ("Cannot copy out of meta tensor"), which
showed as a rare failure when a worker loaded two models at once. Loads are rare and
slow anyway, so every load and every build of a torch model in the project holds this
lock: the worker's model cache, the sentence encoder, generation models and the
training families.
"""

from __future__ import annotations

import threading

#: Held while a model is loaded (``from_pretrained``) or built (``nn.Module`` made).
MODEL_BUILD_LOCK = threading.RLock()
