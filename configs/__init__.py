"""The shipped configs (`--config NAME`): this folder's YAML files, installed by the wheel as
the package `oanet_tf.configs` (pyproject.toml maps it); `oanet_tf.config.resolve_config`
finds them there or, in a checkout, here."""
