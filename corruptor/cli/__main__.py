import sys

from corruptor.cli.main import main

sys.exit(main())
