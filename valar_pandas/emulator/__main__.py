"""``python -m valar_pandas.emulator``: serve the emulator until interrupted."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
