"""stamp: a GitOps catalog of golden machine images."""

__version__ = "0.1.0"
