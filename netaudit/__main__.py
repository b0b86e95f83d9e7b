import sys

from netaudit.cli.main import main

sys.exit(main())
