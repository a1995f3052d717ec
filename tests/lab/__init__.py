"""The lab: a real fleet of Docker engine hosts, a registry and an S3 server on one machine.

Everything lives in network namespaces on a bridge with no uplink (198.51.100.0/24), so nothing
the tests do can reach another network.
"""

from tests.lab.lab import Host, Lab, LabError
from tests.lab.lifecycle import down, leftovers, up

__all__ = ["Host", "Lab", "LabError", "down", "leftovers", "up"]
