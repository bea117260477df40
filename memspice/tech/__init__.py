"""Technologies: built-in card, sky130, user libraries."""

from memspice.tech.technology import CORNERS, Technology, builtin, find_sky130, sky130, user_library

__all__ = ["CORNERS", "Technology", "builtin", "find_sky130", "sky130", "user_library"]
