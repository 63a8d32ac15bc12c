"""Reproducible randomness: one call seeds every generator in use and records it."""

from __future__ import annotations

import os
import random
import sys

__all__ = ["seed_everything"]


def seed_everything(seed: int) -> dict[str, bool]:
    """Seed Python, NumPy, PyTorch and TensorFlow (those imported or installed).

    The seed is recorded as the tag ``keel.seed`` on the active run, and on every
    run started later in this process. Returns which libraries were seeded.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        from keel.exceptions import InvalidSpecError

        raise InvalidSpecError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    seeded = {"random": True}
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses
    try:
        import numpy as np

        np.random.seed(seed)
        seeded["numpy"] = True
    except ImportError:
        seeded["numpy"] = False
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
        seeded["torch"] = True
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.random.set_seed(seed)
        seeded["tensorflow"] = True

    from keel.tracking import fluent

    fluent.default_tags["keel.seed"] = str(seed)
    run = fluent.active_run()
    if run is not None:
        run.client.set_tags(run.run_id, {"keel.seed": str(seed)})
    return seeded
