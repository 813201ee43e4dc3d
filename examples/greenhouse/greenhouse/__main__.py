"""``python -m greenhouse``: run the controller until SIGTERM or SIGINT."""

from greenhouse.service import main

if __name__ == "__main__":
    raise SystemExit(main())
