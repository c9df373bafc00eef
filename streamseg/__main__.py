"""`python -m streamseg ...` runs the `streamseg` command (and `torchrun ... -m streamseg train ...`)."""
import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
