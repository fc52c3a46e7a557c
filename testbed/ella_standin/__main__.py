"""Run the ELLA stand-in (test double) from a source checkout: ``python3 -m ella_standin``."""

import sys

from ella_standin.main import main

sys.exit(main())
