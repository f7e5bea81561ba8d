"""``python -m parhash``."""

from parhash import main

if __name__ == "__main__":
    main()
