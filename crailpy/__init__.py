"""crailpy: ephemeral data of analytics jobs in a disaggregated pool of DRAM and flash."""

from crailpy.client import FileStatus, Store, connect
from crailpy.errors import CrailError

__all__ = ["connect", "Store", "FileStatus", "CrailError"]
__version__ = "0.1.0"
