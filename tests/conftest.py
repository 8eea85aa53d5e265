"""Makes the shared test helpers in tests/ importable from every test: ``from photo_fixtures import write_cub_tree``.

pytest's default "prepend" import mode puts tests/ first on sys.path to import this file (a folder without
__init__.py), which is what makes ``photo_fixtures`` importable. It would also make tests/metricbench/ (no
__init__.py either) pass for a namespace package ``metricbench`` whenever the repository root is not on sys.path
as well (``pytest`` run as a script rather than ``python -m pytest``): the editable install's finder comes after
the path finder. So the real package is imported here first, with tests/ out of the way.
"""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent

if "metricbench" not in sys.modules:
    _saved = sys.path[:]
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _TESTS]
    try:
        import metricbench  # noqa: F401  (cached in sys.modules: later imports get the real package)
    finally:
        sys.path[:] = _saved
