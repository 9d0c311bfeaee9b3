"""The demo's commands (``pipeline api``, ``pipeline game-api``, ``pipeline game-load``): each ``main(argv) -> int``."""
