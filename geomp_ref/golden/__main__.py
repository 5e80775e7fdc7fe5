"""``python -m geomp_ref.golden ...`` is ``geomp-ref golden ...``."""

import sys

from . import main

sys.exit(main())
