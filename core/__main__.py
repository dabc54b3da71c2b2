import sys

from secrun.main import main

sys.exit(main())
