"""`python -m jaxcba` runs the command line."""

import sys

from jaxcba.cli import main

sys.exit(main())
