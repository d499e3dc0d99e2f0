"""automl: a declarative AutoML engine for tabular data.

Public names are imported on first use, so the command line starts fast and
its time budget counts the heavy imports (scikit-learn, Ray, ...) too.
"""

import os
from importlib import import_module

# OpenMP threads that wait for each other sleep rather than spin, unless the user chose
# otherwise. Read once, when an OpenMP runtime loads (LightGBM's, scikit-learn's, torch's),
# so it is set before they are imported; worker processes inherit it. Spinning threads on a
# machine other processes keep busy wait on descheduled partners at every barrier: a
# default LightGBM fit of 80k rows on 2 threads took 116 s with both cores busy, against
# 1.9 s passive; idle, passive costs up to a third on such a fit (1.0-1.4 s against
# 0.9-1.2 s). Trials mostly run on one thread, where it changes nothing.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
_EXPORTS = {"AutoML": "automl.api", "InputError": "automl.errors", "Spec": "automl.spec",
            "load_spec": "automl.spec"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")
