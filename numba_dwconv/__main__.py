"""``python -m numba_dwconv``: the bench report (see :mod:`numba_dwconv.bench`)."""

from .bench import main

raise SystemExit(main())
