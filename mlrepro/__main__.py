import sys

from mlrepro.cli import main

sys.exit(main())
