"""Which webhook URLs a job may name: only hosts the operator allows, and only when there is a key
to sign the POSTs with. Checked when a job is submitted, and again before every POST (the operator
may have withdrawn a host since)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from app.config import Settings
from app.services.errors import InvalidInput


def host_of(url: str) -> str:
    """The URL's host name as compared with the allowed ones: lower case, an IPv6 address bare."""
    return (urlsplit(url).hostname or "").lower()


def normal_host(entry: str) -> str:
    return entry.strip().strip("[]").lower()


@dataclass(frozen=True)
class WebhookPolicy:
    allowed_hosts: frozenset[str] = frozenset()
    can_sign: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookPolicy:
        hosts = frozenset(normal_host(entry) for entry in settings.webhook_allowed_hosts if entry.strip())
        return cls(allowed_hosts=hosts, can_sign=bool(settings.webhook_secret))

    @property
    def on(self) -> bool:
        """Whether this service delivers webhooks at all."""
        return bool(self.allowed_hosts) and self.can_sign

    def allows(self, url: str) -> bool:
        return host_of(url) in self.allowed_hosts

    def check(self, url: str, field: str = "webhook.url") -> None:
        """Raise InvalidInput (422) naming `field` unless a job may send its webhook to `url`."""
        host = host_of(url)
        if not self.allowed_hosts:
            raise InvalidInput(
                f"{field}: webhooks are off on this service (the operator allows no hosts: "
                "THAW_WEBHOOK_ALLOWED_HOSTS); submit the job without a webhook"
            )
        if host not in self.allowed_hosts:
            raise InvalidInput(
                f"{field}: host {host!r} is not allowed; webhooks may go to: {', '.join(sorted(self.allowed_hosts))}"
            )
        if not self.can_sign:
            raise InvalidInput(
                f"{field}: webhooks cannot be signed on this service: the operator must set THAW_WEBHOOK_SECRET"
            )


WEBHOOKS_OFF = WebhookPolicy()
