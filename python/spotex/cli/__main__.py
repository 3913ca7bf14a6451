"""``python -m spotex.cli``: the ``spotex`` command without its script."""

from spotex.cli.main import main

main(prog_name="spotex")
