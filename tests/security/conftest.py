"""Fixtures of the security suite (the sandbox fleet lives in ``sandbox_fleet``)."""

from tests.security.sandbox_fleet import fleet, security_base, target

__all__ = ["fleet", "security_base", "target"]
