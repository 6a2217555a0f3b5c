"""The API's rate throttles and the client address they count by (kept apart from labelhub.api: DRF
imports this module while its views module loads)."""
from django.core.cache import caches
from django.http import HttpRequest
from rest_framework import throttling


def client_address(request: HttpRequest) -> str:
    """The client's address as the throttles see it: the connection's, or X-Forwarded-For's behind
    ``NUM_PROXIES`` proxies (django-axes counts failed logins by it too)."""
    return throttling.BaseThrottle().get_ident(request)


class ScopedUserRateThrottle(throttling.SimpleRateThrottle):
    """One rate per caller and scope: the view's ``throttle_scope`` (queue, predict, export) or "user".

    Authenticated callers are counted by user id, anonymous ones by address (scope "anon"). A
    fixed-window counter (one ``add``/``incr`` per request) rather than DRF's list of request
    times, which a client at hundreds of requests a second would make the cache read and write
    whole on every request; the price is that a burst straddling two windows may reach twice the rate.
    """

    def __init__(self) -> None:  # the rate depends on the view: allow_request sets it
        self.wait_seconds: float | None = None

    @property
    def cache(self):
        return caches["throttle"]

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.ident}

    def identify(self, request, view) -> tuple[str, str]:
        """The scope and the caller this request counts against."""
        if request.user and request.user.is_authenticated:
            return getattr(view, "throttle_scope", None) or "user", str(request.user.pk)
        return "anon", self.get_ident(request)

    def allow_request(self, request, view) -> bool:
        self.scope, self.ident = self.identify(request, view)
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if self.rate is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        key = f"{self.get_cache_key(request, view)}:{window}"
        if self.cache.add(key, 1, self.duration + 1):
            count = 1
        else:
            try:
                count = self.cache.incr(key)
            except ValueError:  # expired between add and incr
                self.cache.add(key, 1, self.duration + 1)
                count = 1
        if count > self.num_requests:
            self.wait_seconds = (window + 1) * self.duration - now
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds


class AuthFailureThrottle(ScopedUserRateThrottle):
    """Requests with a wrong or expired API token, counted per address (scope "auth_failure").

    Token authentication consults it only when a token fails, so that valid requests pay nothing
    for it; past the rate a caller gets a 429 instead of a 401.
    """

    def identify(self, request, view) -> tuple[str, str]:
        return "auth_failure", self.get_ident(request)
