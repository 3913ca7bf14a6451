"""``python -m spotex.cli``: the ``spotex`` command without its script."""

from spotex.cli import main

main(prog_name="spotex")
