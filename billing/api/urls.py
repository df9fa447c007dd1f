from django.urls import path

from billing.api import views

urlpatterns = [
    path("billing/", views.BillingApi.as_view(), name="api-billing"),
    path("billing/invoices/", views.InvoiceListApi.as_view(), name="api-billing-invoices"),
]
