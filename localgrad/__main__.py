import sys

from localgrad.cli import main

sys.exit(main())
