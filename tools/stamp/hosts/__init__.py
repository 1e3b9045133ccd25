"""Where builds and verifications run: one backend per kind of machine (EC2, the local cloud), picked once."""
