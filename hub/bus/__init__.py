"""The hook bus: validate -> before hooks -> one transaction -> after hooks."""

from .bus import Bus, Drop
from .catalogue import HOOKS, Hook, hook
from .handler import AfterEvent, BeforeCall, Handler
from .verdict import Verdict

__all__ = ["HOOKS", "AfterEvent", "BeforeCall", "Bus", "Drop", "Handler", "Hook", "Verdict", "hook"]
