"""The logic of the scripts in ``cmd/``: each module has ``main(argv=None) -> int``."""
