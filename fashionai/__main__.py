"""`python -m fashionai` is the same as the `fashionai` console script."""

from fashionai.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
