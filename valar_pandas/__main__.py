"""``python -m valar_pandas`` runs the command line."""

from ._cli import main

raise SystemExit(main())
