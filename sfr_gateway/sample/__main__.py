"""``python -m sfr_gateway.sample OUTDIR ...``: the ``sfr-gateway sample`` command."""

import sys

from ..cli import main

if __name__ == "__main__":  # importing the module (the docs' check) runs nothing
    sys.exit(main(["sample", *sys.argv[1:]]))
