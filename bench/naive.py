#!/usr/bin/env python3
"""The textbook naive pattern, as a baseline for bench/compare.py.

    python bench/naive.py DIR > digests.json

List every file with os.walk into a list, ``Pool(2).map`` a function that reads the whole
file and returns its md5 hex digest, then one ``json.dump`` of all results to stdout.
Deliberately unoptimized: this is what parhash has to beat by a wide margin.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from multiprocessing import Pool


def md5_file(path: str) -> tuple[str, str]:
    with open(path, "rb") as f:
        return path, hashlib.md5(f.read()).hexdigest()


def main() -> None:
    root = sys.argv[1]
    paths = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            paths.append(os.path.join(dirpath, name))
    with Pool(2) as pool:
        results = pool.map(md5_file, paths)
    json.dump(dict(results), sys.stdout)


if __name__ == "__main__":
    main()
