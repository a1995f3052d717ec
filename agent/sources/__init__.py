"""Sources of a registry's storage settings: distribution config.yml, DTR/MSR API or JSON, harbor.yml.

``load_source(spec, env=None)`` auto-detects the kind from content (or a URL) and returns
:class:`RegistrySettings`.
"""

from agent.sources.model import RegistrySettings, S3Storage

__all__ = ["RegistrySettings", "S3Storage"]
