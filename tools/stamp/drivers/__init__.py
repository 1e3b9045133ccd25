"""Drivers of outside tools and OS facilities: Packer, processes, ssh, git, signals, locks, run directories."""
