from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField(unique=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Invoice(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="invoices")
    number = models.CharField(max_length=20, unique=True)
    amount_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=10)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.number


class Profile(models.Model):
    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="profile")
    company = models.CharField(max_length=100)
    phone = models.CharField(max_length=30)

    def __str__(self) -> str:
        return self.company
