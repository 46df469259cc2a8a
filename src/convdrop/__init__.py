"""convdrop."""
