"""``python -m numba_dwconv``: the bench report (:mod:`numba_dwconv.bench`); ``... warmup``: :mod:`.warmup`."""

import sys

if sys.argv[1:2] == ["warmup"]:
    from .warmup import main as warmup_main

    raise SystemExit(warmup_main(sys.argv[2:]))

from .bench import main

raise SystemExit(main())
