"""One module per command of `python -m oanet_tf`: add_arguments(parser) and run(args)."""
