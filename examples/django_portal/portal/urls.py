from django.urls import include, path, re_path

from examples.django_portal.billing import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login", views.login, name="login"),
    path("dashboard", views.dashboard, name="dashboard"),
    path("billing/<int:customer_id>", views.billing, name="billing"),
    path("profile", views.profile, name="profile"),
    path("api/", include("examples.django_portal.billing.api_urls")),
    path("slow", views.slow, name="slow"),
    path("reports/uncached", views.uncached_report, name="uncached-report"),
    path("stream", views.stream, name="stream"),
    path("boom", views.boom, name="boom"),
    path("promo", views.promo, name="promo"),
    path("static/<str:filename>", views.static_asset, name="static-asset"),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", views.archive, name="archive"),
]
