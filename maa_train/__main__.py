import sys

from maa_train.train.cli import main

sys.exit(main())
