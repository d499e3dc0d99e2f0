"""The local backend's zygote process: ``python -m automl.execution._zygote FD`` (see ``local``)."""

import sys

from automl.execution.local import serve

if __name__ == "__main__":
    serve(int(sys.argv[1]))
