"""``python -m geomp_ref.nbody ...`` runs :func:`geomp_ref.nbody.cli.main`."""

from .cli import main

raise SystemExit(main())
