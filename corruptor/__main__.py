import sys

from corruptor.cli import main

sys.exit(main())
