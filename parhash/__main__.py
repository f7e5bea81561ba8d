"""``python -m parhash``."""

from parhash.cli import main

if __name__ == "__main__":
    main()
