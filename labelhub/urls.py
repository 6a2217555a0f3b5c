"""Top-level URL configuration."""
from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# Unmatched URLs under /api/ answer JSON like the API's own 404s.
handler404 = "labelhub.api.api_not_found"
# A database lock timeout that escapes every view answers 503, not 500.
handler500 = "labelhub.middleware.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico whatever the page says; pages name the static file themselves.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico"), permanent=True), name="favicon"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI (served from our static files) sets inline styles as it renders: allowed on this page only.
    path(
        "api/docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/", include("annotations.api_urls")),
    path("api/", include("learner.api_urls")),
    path("", include("learner.urls")),
    path("", include("annotations.urls")),
]

# No route serves MEDIA_ROOT, in any mode: item images are served only by the item media view,
# which checks the project's membership (or an export's signed link).
