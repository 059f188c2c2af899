from django.db import migrations


def create_provider_role(apps, schema_editor):
    Role = apps.get_model("accounts", "Role")
    Role.objects.get_or_create(name="Provider", defaults={"description": "Healthcare Provider"})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(create_provider_role, migrations.RunPython.noop)]
