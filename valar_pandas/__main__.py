"""``python -m valar_pandas`` runs the command line."""

from ._cli.main import main

raise SystemExit(main())
