"""The RedisQueue resource itself: its identity, spec and status models, the names derived
from it, the installer's policy and the CRD generated from the models. Pure: no I/O."""
