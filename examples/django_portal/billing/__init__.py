"""Customers, invoices and profiles: the portal's only app."""
