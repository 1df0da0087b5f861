"""The JSON API, included under ``api/``."""

from django.urls import path

from examples.django_portal.billing import views

urlpatterns = [
    path("customers", views.list_customers, name="api-customers"),
    path("customers/<int:customer_id>", views.get_customer, name="api-customer"),
    path("invoices/n-plus-one", views.invoices_n_plus_one, name="api-invoices-n-plus-one"),
    path("invoices/fixed", views.invoices_fixed, name="api-invoices-fixed"),
    path("v2/articles/<slug:slug>", views.get_article, name="api-v2-article"),
]
