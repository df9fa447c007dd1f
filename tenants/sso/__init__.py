"""Workspace sign-in: each workspace's OpenID Connect identity provider, its verified email
domains, and what it requires of a member's session (SSO, two-factor). docs/sso.md."""
