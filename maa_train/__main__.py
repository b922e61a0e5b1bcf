import sys

from maa_train.cli import main

sys.exit(main())
