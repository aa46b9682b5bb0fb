import sys

from bitnas.cli import main

sys.exit(main())
