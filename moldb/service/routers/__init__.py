"""One router per resource: entries, deposits, select, users/tokens, audit, health."""
