import sys

from midas_service.cli import main

sys.exit(main())
