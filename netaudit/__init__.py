"""netaudit: a network exposure scanner for TensorFlow servers."""

__version__ = "0.1.0"
# The name on the package index (`netaudit` there is another project); the command and the import stay netaudit.
DISTRIBUTION = "netaudit-tf"
LAB_INSTALL = f"pip install '{DISTRIBUTION}[lab]'"
