"""`python -m faceforget` (and `torchrun ... -m faceforget unlearn ...`): the CLI."""
from faceforget.cli import app

if __name__ == "__main__":
    app()
