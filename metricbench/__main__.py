import os
import sys

from .cli import main
from .distributed import launched_by_torchrun

code = main()
if launched_by_torchrun():
    # Every file is written and the process group destroyed by now; skip interpreter teardown, where
    # gloo's background threads occasionally abort the process ("terminate called without an active
    # exception", exit -6) after a complete run, which torchrun would report as a failure.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
