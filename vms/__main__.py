import sys

from vms.cli import main

sys.exit(main())
