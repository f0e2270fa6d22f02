"""Migration steps (``m<from>_to_<to>.py``). Schema v1 is the first version: none yet."""
