"""automl: a declarative AutoML engine for tabular data.

Public names are imported on first use, so the command line starts fast and
its time budget counts the heavy imports (scikit-learn, Ray, ...) too.
"""

from importlib import import_module

__version__ = "0.1.0"
_EXPORTS = {"AutoML": "automl.api", "InputError": "automl.errors", "Spec": "automl.spec",
            "load_spec": "automl.spec"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'automl' has no attribute {name!r}")
