"""Data migration: the demo customers, profiles and invoices (20 customers x 5 invoices)."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

CUSTOMERS = 20
INVOICES_EACH = 5


def seed(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    db = schema_editor.connection.alias
    Customer = apps.get_model("billing", "Customer")
    Invoice = apps.get_model("billing", "Invoice")
    Profile = apps.get_model("billing", "Profile")
    ids = range(1, CUSTOMERS + 1)
    Customer.objects.using(db).bulk_create(
        Customer(id=i, name=f"Customer {i:02d}", email=f"customer{i:02d}@example.com") for i in ids
    )
    Profile.objects.using(db).bulk_create(
        Profile(customer_id=i, company=f"Company {i:02d}", phone=f"+1-555-01{i:02d}") for i in ids
    )
    Invoice.objects.using(db).bulk_create(
        Invoice(
            customer_id=i,
            number=f"INV-{i:02d}-{j}",
            amount_cents=1000 * i + 250 * j,
            status="paid" if j % 2 else "open",
        )
        for i in ids
        for j in range(1, INVOICES_EACH + 1)
    )


def unseed(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    db = schema_editor.connection.alias
    apps.get_model("billing", "Customer").objects.using(db).all().delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
