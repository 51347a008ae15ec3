"""``python -m nni_dash.cli`` = ``nni-dash``."""
import sys

from nni_dash.cli import main

sys.exit(main())
