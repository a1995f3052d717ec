"""trust-agent: make Docker engines trust a private registry whose blobs live on S3-compatible storage."""

__version__ = "0.1.0"
