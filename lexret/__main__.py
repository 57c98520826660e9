import sys

from lexret.cli import main

sys.exit(main())
